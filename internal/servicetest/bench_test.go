package servicetest_test

import (
	"io"
	"net"
	"testing"

	"github.com/resilience-go/resilience/internal/servicetest"
)

// BenchmarkProxy sends 64 KiB through the proxy to an echo server and back:
// what the proxy adds to a test that runs traffic through it.
func BenchmarkProxy(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }() //nolint:errcheck // ends with the connection
		}
	}()
	p := servicetest.NewProxy(b, ln.Addr().String())
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(conn, buf); err != nil {
			b.Fatal(err)
		}
	}
}
