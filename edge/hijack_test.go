package edge_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client may send its first frames in the same packet as the upgrade
// request, before it has read the 101. The edge replaces net/http's
// buffers at the hijack (memory per idle connection); whatever the client
// sent early must survive that, whether it is one small frame or more than
// the new read buffer holds.
func TestEarlyFramesSurviveUpgrade(t *testing.T) {
	cl := startCluster(t, 1, nil)
	for _, pad := range []int{0, 3000} {
		t.Run(fmt.Sprintf("pad %d", pad), func(t *testing.T) {
			nc, err := net.Dial("tcp", cl.Edges[0].Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
			req := "GET /v1/ws HTTP/1.1\r\nHost: " + cl.Edges[0].Addr() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: causeway.v1\r\n\r\n"
			// Padding makes the hello longer than the edge's read buffer
			// (an unknown field: ignored).
			hello := fmt.Sprintf(`{"type":"hello","id":"h","token":%q,"pad":%q}`, token(t, "early", "room-*"), strings.Repeat("x", pad))
			early := maskedFrame(1, []byte(hello))
			if _, err := nc.Write(append([]byte(req), early...)); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(nc)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %s", resp.Status)
			}
			for {
				payload, err := readServerFrame(br)
				if err != nil {
					t.Fatalf("before welcome: %v", err)
				}
				if strings.Contains(string(payload), `"type":"welcome"`) {
					return
				}
				if strings.Contains(string(payload), `"type":"error"`) {
					t.Fatalf("got %s", payload)
				}
			}
		})
	}
}

// maskedFrame encodes one client-to-server WebSocket frame.
func maskedFrame(opcode byte, payload []byte) []byte {
	b := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	default:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	}
	key := [4]byte{1, 2, 3, 4}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// readServerFrame reads one unmasked server frame's payload.
func readServerFrame(br *bufio.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, err
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return nil, err
		}
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return nil, err
		}
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	p := make([]byte, n)
	_, err := io.ReadFull(br, p)
	return p, err
}
