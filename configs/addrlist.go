package configs

import (
	"fmt"
	"net/netip"
	"strings"
)

// MaxAddrList bounds the addresses ParseAddrList expands.
const MaxAddrList = 1 << 16

// ParseAddrList parses "A-B" (an inclusive IPv4 or IPv6 range), "A,B,C" or
// "A", or a comma list of those. "" yields nil.
func ParseAddrList(s string) ([]netip.Addr, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []netip.Addr
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("%q: %v", part, err)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b, err := netip.ParseAddr(strings.TrimSpace(hi))
		if err != nil {
			return nil, fmt.Errorf("%q: %v", part, err)
		}
		if a.Is4() != b.Is4() || b.Less(a) {
			return nil, fmt.Errorf("%q: not an ascending range", part)
		}
		for x := a; ; x = x.Next() {
			out = append(out, x)
			if len(out) > MaxAddrList {
				return nil, fmt.Errorf("more than %d addresses", MaxAddrList)
			}
			if x == b {
				break
			}
		}
	}
	return out, nil
}
