package policy_test

import (
	"fmt"
	"net/netip"

	"github.com/relayd/relayd/edge/policy"
)

func ExamplePolicy_Check() {
	p, _ := policy.New(policy.Config{Allow: []policy.Entry{
		{CIDR: "127.0.0.1/32", Ports: "8080"}, // a test upstream on loopback
		{Name: "tls", CIDR: "0.0.0.0/0", Ports: "443"},
	}})
	p.AddSelf(netip.MustParseAddrPort("127.0.0.1:1080"))
	for _, dst := range []string{"127.0.0.1:8080", "127.0.0.1:1080", "[::ffff:10.0.0.1]:443", "169.254.169.254:443", "1.1.1.1:443", "1.1.1.1:25"} {
		rule, ok := p.Check(netip.MustParseAddrPort(dst))
		fmt.Println(dst, ok, rule)
	}
	// Output:
	// 127.0.0.1:8080 true allow:127.0.0.1/32:8080
	// 127.0.0.1:1080 false self
	// [::ffff:10.0.0.1]:443 false private
	// 169.254.169.254:443 false metadata
	// 1.1.1.1:443 true tls
	// 1.1.1.1:25 false not-allowed
}
