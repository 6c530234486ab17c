package steer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// Offsets of classic BPF's ancillary loads (linux/filter.h): negative
// absolute offsets reach the skb's metadata and its network header, since
// a reuseport program sees the data past the TCP header.
const (
	skfAdOff      = -0x1000
	skfAdProtocol = 0 // skb->protocol, host order after the load
	skfNetOff     = -0x100000
	ethPIPv6      = 0x86dd
	golden        = 0x9E3779B1 // 2^32 / φ: Knuth's multiplicative hash
)

func off(k int32) uint32 { return uint32(k) }

// Program returns the classic BPF program that picks socket
// Index(source, n) of a group of n.
func Program(n int) []unix.SockFilter {
	ld := uint16(unix.BPF_LD | unix.BPF_W | unix.BPF_ABS)
	return []unix.SockFilter{
		{Code: ld, K: off(skfAdOff + skfAdProtocol)},                                // 0 A = protocol
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 5, K: ethPIPv6}, // 1 IPv6? 2 : 7
		{Code: ld, K: off(skfNetOff + 8)},                                           // 2 A = src[0:4]
		{Code: unix.BPF_MISC | unix.BPF_TAX},                                        // 3 X = A
		{Code: ld, K: off(skfNetOff + 12)},                                          // 4 A = src[4:8]
		{Code: unix.BPF_ALU | unix.BPF_XOR | unix.BPF_X},                            // 5 A ^= X: the /64
		{Code: unix.BPF_JMP | unix.BPF_JA, K: 1},                                    // 6 → 8
		{Code: ld, K: off(skfNetOff + 12)},                                          // 7 A = IPv4 source
		{Code: unix.BPF_ALU | unix.BPF_MUL | unix.BPF_K, K: golden},                 // 8
		{Code: unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K, K: 16},                     // 9
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(n)},              // 10
		{Code: unix.BPF_RET | unix.BPF_A},                                           // 11
	}
}

// Index is the socket (worker) the program picks for a connection from src
// in a group of n: the same arithmetic in Go, for tests and for operators'
// tools that need to know where a source lands.
func Index(src netip.Addr, n int) int {
	src = src.Unmap()
	var h uint32
	if src.Is4() {
		a := src.As4()
		h = binary.BigEndian.Uint32(a[:])
	} else {
		a := src.As16()
		h = binary.BigEndian.Uint32(a[0:4]) ^ binary.BigEndian.Uint32(a[4:8])
	}
	return int(((h * golden) >> 16) % uint32(n))
}

// Attach installs the program on fd's reuseport group, whose sockets must
// all be bound already, in the order that gives them their index.
func Attach(fd, n int) error {
	if n < 1 {
		return fmt.Errorf("steer: %d sockets", n)
	}
	prog := Program(n)
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fp); err != nil {
		return fmt.Errorf("steer: %w", os.NewSyscallError("setsockopt SO_ATTACH_REUSEPORT_CBPF", err))
	}
	return nil
}
