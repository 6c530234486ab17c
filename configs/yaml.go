package configs

import (
	"bytes"
	_ "embed"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ReferenceYAML is configs/relayd.yaml: every key, commented, with the
// built-in defaults as values, and one example listener. It loads and
// validates as is (a test checks that, and that its values equal Default).
//
//go:embed relayd.yaml
var ReferenceYAML []byte

// RedactedPassword replaces passwords in YAML output.
const RedactedPassword = "<redacted>"

// YAML renders the effective config in the file's own format and key order,
// durations as "5m" and sizes in bytes, for `relayd config check`. Loading
// the output gives back the same Config, with one exception: passwords in
// listeners' auth.users are printed as RedactedPassword, since the output
// lands in terminals and CI logs.
func (c *Config) YAML() ([]byte, error) {
	out := *c
	out.Listeners = slices.Clone(c.Listeners)
	for i := range out.Listeners {
		users := slices.Clone(out.Listeners[i].Auth.Users)
		for j, u := range users {
			if name, _, ok := strings.Cut(u, ":"); ok {
				users[j] = name + ":" + RedactedPassword
			}
		}
		out.Listeners[i].Auth.Users = users
	}
	if out.Admin.Token != "" {
		out.Admin.Token = RedactedPassword
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(toNode(reflect.ValueOf(out))); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func scalar(tag, value string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}

// toNode builds the document by hand rather than through struct tags so that
// durations are written as "30s" (yaml.v3 would write nanoseconds) and keys
// come from the mapstructure tags the loader reads.
func toNode(v reflect.Value) *yaml.Node {
	t := v.Type()
	switch {
	case t == durationType:
		return scalar("!!str", formatDuration(time.Duration(v.Int())))
	case t == processesType && ProcessCount(v.Int()) == ProcessesAuto:
		return scalar("!!str", "auto")
	case isSection(t):
		n := &yaml.Node{Kind: yaml.MappingNode}
		for i := range t.NumField() {
			n.Content = append(n.Content, scalar("!!str", fieldKey(t.Field(i))), toNode(v.Field(i)))
		}
		return n
	}
	switch t.Kind() {
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		if !isSection(t.Elem()) {
			n.Style = yaml.FlowStyle
		}
		for i := range v.Len() {
			n.Content = append(n.Content, toNode(v.Index(i)))
		}
		return n
	case reflect.Int, reflect.Int64:
		return scalar("!!int", strconv.FormatInt(v.Int(), 10))
	case reflect.Bool:
		return scalar("!!bool", strconv.FormatBool(v.Bool()))
	default:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v.String(), Style: yaml.DoubleQuotedStyle}
	}
}

// formatDuration is time.Duration.String without the zero tails: "5m", not
// "5m0s"; "1h", not "1h0m0s". time.ParseDuration reads both.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// RedactedMap is the effective config as YAML() prints it (passwords and
// the admin token redacted), decoded into maps keyed as the config file:
// what the admin endpoint's /config shows as JSON.
func (c *Config) RedactedMap() (map[string]any, error) {
	b, err := c.YAML()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}
