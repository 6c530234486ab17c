package master

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A message arrives whole with its descriptors, which refer to the same
// open file as the sender's.
func TestControlCarriesFDs(t *testing.T) {
	m, child, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	w := NewConn(int(child.Fd()))
	defer child.Close()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if err := m.Send(Msg{Type: MsgHello, Worker: 3, Listeners: []ListenerFD{{Name: "l0", Key: 7, FD: 0}}}, []int{p[1]}); err != nil {
		t.Fatal(err)
	}
	got, fds, err := w.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != MsgHello || got.Worker != 3 || len(got.Listeners) != 1 || got.Listeners[0].Key != 7 || len(fds) != 1 {
		t.Fatalf("got %+v with %d fds", got, len(fds))
	}
	if _, err := unix.Write(fds[0], []byte("x")); err != nil {
		t.Fatal(err)
	}
	unix.Close(fds[0])
	b := make([]byte, 1)
	if n, _ := unix.Read(p[0], b); n != 1 || b[0] != 'x' {
		t.Fatal("the received fd is not the sent pipe")
	}
	m.Shutdown()
	if _, _, err := w.Recv(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after the peer's shutdown: %v, want ErrClosed", err)
	}
}

// Workers that never get ready make the supervisor give up after GiveUp
// starts instead of restarting them forever.
func TestSupervisorGivesUp(t *testing.T) {
	exe := "/bin/false"
	if _, err := os.Stat(exe); err != nil {
		t.Skip("no /bin/false")
	}
	s, err := New(Config{Exe: exe, Workers: 2, GiveUp: 3, BackoffMin: time.Millisecond,
		Hello: func(int) (Msg, []int) { return Msg{Type: MsgHello}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	select {
	case err := <-s.Dead():
		if err == nil {
			t.Fatal("nil error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the supervisor kept restarting workers that never got ready")
	}
	if s.AllReady() {
		t.Fatal("ready with no worker ready")
	}
	s.Stop(time.Now().Add(5 * time.Second))
	var restarts uint64
	for _, w := range s.Status() {
		restarts += w.Restarts
	}
	if restarts == 0 {
		t.Fatal("no worker was restarted before giving up")
	}
}
