package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The README's first command: it must relay on the built-in defaults with
// no errors and print its table.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	if err := demo(context.Background(), &out, 500*time.Millisecond, 8); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"rr via relayd", "bulk via relayd", "relayd/direct:", "closed by reason: eof "} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "map[") {
		t.Fatalf("demo prints Go's map formatting:\n%s", out.String())
	}
}
