package shm

import (
	"testing"

	"golang.org/x/sys/unix"
)

func dupFD(t *testing.T, fd int) int {
	t.Helper()
	d, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
