package sandbox

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// Capture carries clients that ignore the proxy variables to the proxy
// all the same. The DNS stub answers every name with a loopback address
// of its own, and listeners on ports 80 and 443 turn a connection to such
// an address back into the name: the forwarder then asks the proxy to
// CONNECT to name:port, and the proxy treats it as it would any CONNECT,
// with the same policy, interception and injection, and a TLS client
// whose SNI disagrees with the name refused. Other ports stay closed.

// capturedPorts are the ports whose connections are carried to the proxy.
var capturedPorts = []int{80, 443}

// startCapture starts the DNS stub on 127.0.0.1:53 (UDP and TCP) and the
// capture listeners.
func (in *inside) startCapture(bridges []Bridge) error {
	in.bridges = map[int]string{}
	for _, b := range bridges {
		in.bridges[b.Port] = b.Host
	}
	in.names = newNameTable()
	udp, err := net.ListenPacket("udp", "127.0.0.1:53")
	if err != nil {
		return fmt.Errorf("starting the DNS stub: %w", err)
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:53")
	if err != nil {
		return fmt.Errorf("starting the DNS stub: %w", err)
	}
	go in.serveDNSPackets(udp)
	go in.serveDNSStream(tcp)

	for _, port := range capturedPorts {
		l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			return fmt.Errorf("capturing port %d: %w", port, err)
		}
		go in.serveCaptured(l, port)
	}
	for _, b := range bridges {
		if slices.Contains(capturedPorts, b.Port) || b.Port == ProxyPort || b.Port == 53 {
			continue // those ports already lead to the proxy
		}
		for _, addr := range []string{"127.0.0.1", "::1"} {
			l, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(b.Port)))
			if err != nil {
				if addr == "::1" {
					continue // no IPv6 loopback here
				}
				return fmt.Errorf("bridging port %d: %w", b.Port, err)
			}
			go in.serveCaptured(l, b.Port)
		}
	}
	return nil
}

func (in *inside) serveDNSPackets(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			continue
		}
		if reply := in.names.answer(buf[:n]); reply != nil {
			pc.WriteTo(reply, from)
		}
	}
}

// serveDNSStream answers DNS over TCP: each message prefixed with its
// two-byte length.
func (in *inside) serveDNSStream(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			for {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				var size uint16
				if err := binary.Read(c, binary.BigEndian, &size); err != nil {
					return
				}
				query := make([]byte, size)
				if _, err := io.ReadFull(c, query); err != nil {
					return
				}
				reply := in.names.answer(query)
				if reply == nil {
					return
				}
				out := binary.BigEndian.AppendUint16(nil, uint16(len(reply)))
				if _, err := c.Write(append(out, reply...)); err != nil {
					return
				}
			}
		}()
	}
}

// serveCaptured forwards connections on a captured port to the proxy as a
// CONNECT to the name their destination address stands for.
func (in *inside) serveCaptured(l net.Listener, port int) {
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			local, err := netip.ParseAddrPort(c.LocalAddr().String())
			if err != nil {
				return
			}
			name, ok := in.names.nameFor(local.Addr())
			if !ok && local.Addr().IsLoopback() {
				name, ok = in.bridges[port]
			}
			if !ok {
				return // not an address the stub handed out, nor a bridge
			}
			up, err := net.Dial("unix", in.proxyAddr)
			if err != nil {
				return
			}
			defer up.Close()
			authority := net.JoinHostPort(name, strconv.Itoa(port))
			fmt.Fprintf(up, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority)
			br := bufio.NewReader(up)
			res, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil {
				return
			}
			if res.StatusCode != http.StatusOK {
				// A plain-HTTP client can read the proxy's refusal.
				if port == 80 {
					res.Write(c)
				}
				return
			}
			if br.Buffered() > 0 {
				return // the proxy never speaks first in a tunnel
			}
			spliceConns(c, up)
		}()
	}
}
