package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain lets the test binary act as a sink child process
// (LOADTEST_CHILD_SINK=mode) so memory tests can measure the generator and
// the sink separately; otherwise it runs the tests with a goroutine leak
// check.
func TestMain(m *testing.M) {
	if mode := os.Getenv("LOADTEST_CHILD_SINK"); mode != "" {
		os.Exit(childSink(mode))
	}
	goleak.VerifyTestMain(m,
		// gnet's package-level ants worker pool, started at init.
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
		// netpoll's global pollers, started by its first dial (BenchmarkDialNetpoll).
		goleak.IgnoreAnyFunction("github.com/cloudwego/netpoll.(*defaultPoll).Wait"),
	)
}

func childSink(mode string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s, err := StartSink(ctx, SinkConfig{Listen: "127.0.0.1:0", Mode: mode})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(s.Addr())
	<-ctx.Done()
	_ = s.Close()
	return 0
}

// startChildSink runs a sink in a child process and returns its address and
// PID; cleanup sends SIGTERM and waits.
func startChildSink(t testing.TB, mode string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOADTEST_CHILD_SINK="+mode)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("child sink: %v", err)
	}
	return strings.TrimSpace(line), cmd.Process.Pid
}

// TestIdle10k is acceptance 3: holding 10,000 idle sessions costs this
// process < 5 KiB RSS each. Opt-in (LOADTEST_IDLE10K=1) because it needs
// ~10k descriptors in each of two processes and a few seconds.
func TestIdle10k(t *testing.T) {
	if os.Getenv("LOADTEST_IDLE10K") == "" {
		t.Skip("set LOADTEST_IDLE10K=1 to run the 10,000-session RSS measurement")
	}
	addr, pid := startChildSink(t, SinkEcho)
	const n = 10_000
	start := time.Now()
	res := run(t, LoadConfig{Target: addr, Mode: ModeIdle, Sessions: n, PID: pid})
	noErrors(t, res)
	if res.Sessions != n {
		t.Fatalf("opened %d of %d", res.Sessions, n)
	}
	t.Logf("idle %d sessions: open %.2fs (total %.2fs); load RSS %d -> %d = %.0f B/session; sink (pid %d) RSS %d -> %d = %.0f B/session",
		n, res.IdleOpenTime.Seconds(), time.Since(start).Seconds(), res.SelfRSSBefore, res.SelfRSSAfter, res.SelfRSSPerSession,
		pid, res.TargetRSSBefore, res.TargetRSSAfter, res.TargetRSSPerSession)
	if res.SelfRSSPerSession >= 5*1024 {
		t.Fatalf("load generator RSS %.0f B/session, want < 5 KiB", res.SelfRSSPerSession)
	}
}
