package configs_test

import (
	"errors"
	"fmt"

	"github.com/relayd/relayd/configs"
)

func ExampleLoad() {
	cfg, err := configs.Load(configs.LoadOptions{
		Listen:    "127.0.0.1:7000",
		Upstreams: []string{"127.0.0.1:7001,127.0.0.1:7002"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	l := cfg.Listeners[0]
	fmt.Println(l.Name, l.Listen, l.Upstreams, l.Balance, "retries", l.Retries)
	fmt.Println("buffer", cfg.Relay.BufferSize, "idle", cfg.Relay.IdleTimeout)
	// Output:
	// default 127.0.0.1:7000 [127.0.0.1:7001 127.0.0.1:7002] round-robin retries 1
	// buffer 32768 idle 5m0s
}

func ExampleLoadBytes_errors() {
	file := []byte(`
listeners:
  - listen: 127.0.0.1:7000
    upstreams: []
relay:
  bufer_size: 64k
  buffer_size: -1
`)
	_, err := configs.LoadBytes("relayd.yaml", file, configs.LoadOptions{})
	fmt.Println(err)
	var fe *configs.FieldError
	fmt.Println(errors.As(err, &fe), fe.Key, errors.Is(err, configs.ErrInvalid))
	// Output:
	// relay.bufer_size: unknown key
	// listeners[0].upstreams: []: at least one upstream is required
	// relay.buffer_size: -1: must be between 1024 and 16777216
	// true relay.bufer_size true
}
