package configs

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzLoadYAML loads arbitrary bytes as a config file. Load must never panic,
// must return exactly one of a config or an error, every error must say the
// config is invalid (FieldError or SyntaxError), and a config it accepts must
// validate and survive YAML() → LoadBytes unchanged.
func FuzzLoadYAML(f *testing.F) {
	f.Add(ReferenceYAML)
	for _, s := range []string{
		minimal,
		minimal + "relay:\n  buffer_size: 64k\n  idle_timeout: 90s\n",
		minimal + "relay:\n  bufer_size: 1\n",
		minimal + "    colour: blue\n",
		"listeners:\n  - listen: \"[::1]:7000\"\n    upstreams: [\"[::1]:7001\", 127.0.0.1:7002]\n    balance: least-conn\n    retries: 1\n",
		"listeners: {a: 1}\nrelay: 5\n",
		"relay:\n  loops: 4\n   x: 1\n",
		"- a\n",
		"a: &x [*x]\n",
		"listeners:\n  - &l {listen: 127.0.0.1:1, upstreams: [127.0.0.1:2]}\n  - *l\n",
		"relay.loops: 4\n" + minimal,
		"? [a]\n: 1\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := LoadBytes("fuzz.yaml", data, LoadOptions{})
		if (cfg == nil) == (err == nil) {
			t.Fatalf("cfg %v, err %v: want exactly one", cfg, err)
		}
		if err != nil {
			var fe *FieldError
			var se *SyntaxError
			if !errors.Is(err, ErrInvalid) || !(errors.As(err, &fe) || errors.As(err, &se)) {
				t.Fatalf("error %v (%T) is not a FieldError or SyntaxError", err, err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load returned a config that does not validate: %v", err)
		}
		out, err := cfg.YAML()
		if err != nil {
			t.Fatalf("YAML: %v", err)
		}
		back, err := LoadBytes("out.yaml", out, LoadOptions{})
		if err != nil {
			t.Fatalf("YAML() output does not load: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, cfg) {
			t.Fatalf("round trip changed the config\n got %+v\nwant %+v\n%s", back, cfg, out)
		}
	})
}
