//go:build linux

package linkemu

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// TUN is a Linux TUN device without packet information (IFF_TUN|IFF_NO_PI): each Read
// returns one IP packet, each Write sends one. Close unblocks a pending Read.
type TUN struct {
	*os.File
	name string
}

// OpenTUN attaches to the TUN device called name (creating it, not persistent, if it does
// not exist, e.g. made by `ip tuntap add NAME mode tun`) and brings it up. Needs
// CAP_NET_ADMIN.
func OpenTUN(name string) (*TUN, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("linkemu: open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("linkemu: TUN name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("linkemu: TUNSETIFF %s: %w", name, err)
	}
	if err := setUp(name); err != nil {
		_ = unix.Close(fd)
		return nil, err
	}
	// A non-blocking descriptor goes through Go's poller, so that Close ends a Read.
	return &TUN{File: os.NewFile(uintptr(fd), "/dev/net/tun:"+name), name: name}, nil
}

// Name returns the device's name.
func (t *TUN) Name() string { return t.name }

// setUp sets IFF_UP on the interface.
func setUp(name string) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("linkemu: socket: %w", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("linkemu: SIOCGIFFLAGS %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("linkemu: SIOCSIFFLAGS %s: %w", name, err)
	}
	return nil
}
