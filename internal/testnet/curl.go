package testnet

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"testing"
	"time"
)

// Curl runs curl -sS with a 20 s limit and returns its standard output and
// exit code. The test is skipped where curl is not installed.
func Curl(t testing.TB, args ...string) (string, int) {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, append([]string{"-sS", "--max-time", "20"}, args...)...).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// PageServer serves body to every HTTP request on 127.0.0.1 for the rest of
// the test and returns its port.
func PageServer(t testing.TB, body string) int {
	t.Helper()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) }))
	t.Cleanup(web.Close)
	return web.Listener.Addr().(*net.TCPAddr).Port
}

// Splice sends early (bytes the client pipelined after its handshake) to up,
// then relays c and up both ways, forwarding the client's FIN, until up is
// done: the relay step of a test's minimal proxy.
func Splice(c, up net.Conn, early []byte) {
	_, _ = up.Write(early)
	go func() {
		_, _ = io.Copy(up, c)
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(c, up)
}
