package scripttest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// respReply is one RESP2 reply. go-redis folds status replies into plain
// strings, but a script sees "+OK" as {ok='OK'} and "$2\r\nOK" as 'OK', so the
// harness speaks RESP2 itself to keep the distinction.
type respReply struct {
	kind  byte // '+' status, '-' error, ':' integer, '$' bulk, '*' array
	str   string
	num   int64
	null  bool // null bulk ($-1) or null array (*-1)
	elems []respReply
}

// respConn is a minimal RESP2 client over one TCP connection.
type respConn struct {
	conn net.Conn
	rd   *bufio.Reader
	wr   *bufio.Writer
}

func dialRESP(ctx context.Context, addr string) (*respConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &respConn{conn: c, rd: bufio.NewReader(c), wr: bufio.NewWriter(c)}, nil
}

func (c *respConn) close() error { return c.conn.Close() }

// do sends args as an array of bulk strings and reads one reply. A Redis
// error reply is returned as a reply of kind '-', not as a Go error; the Go
// error is for I/O and protocol failures only (the connection is then unusable).
func (c *respConn) do(ctx context.Context, args []string) (respReply, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		return respReply{}, err
	}
	c.wr.WriteString("*")
	c.wr.WriteString(strconv.Itoa(len(args)))
	c.wr.WriteString("\r\n")
	for _, a := range args {
		c.wr.WriteString("$")
		c.wr.WriteString(strconv.Itoa(len(a)))
		c.wr.WriteString("\r\n")
		c.wr.WriteString(a)
		c.wr.WriteString("\r\n")
	}
	if err := c.wr.Flush(); err != nil {
		return respReply{}, err
	}
	return c.read(0)
}

const maxReplyDepth = 64

func (c *respConn) readLine() (string, error) {
	line, err := c.rd.ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return "", fmt.Errorf("resp: malformed line %q", line)
	}
	return line[:len(line)-2], nil
}

func (c *respConn) read(depth int) (respReply, error) {
	if depth > maxReplyDepth {
		return respReply{}, errors.New("resp: reply nested too deeply")
	}
	line, err := c.readLine()
	if err != nil {
		return respReply{}, err
	}
	if line == "" {
		return respReply{}, errors.New("resp: empty line")
	}
	r := respReply{kind: line[0]}
	body := line[1:]
	switch r.kind {
	case '+', '-':
		r.str = body
	case ':':
		if r.num, err = strconv.ParseInt(body, 10, 64); err != nil {
			return respReply{}, fmt.Errorf("resp: bad integer %q", body)
		}
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return respReply{}, fmt.Errorf("resp: bad bulk length %q", body)
		}
		if n == -1 {
			r.null = true
			return r, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.rd, buf); err != nil {
			return respReply{}, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return respReply{}, errors.New("resp: bulk string not terminated by CRLF")
		}
		r.str = string(buf[:n])
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return respReply{}, fmt.Errorf("resp: bad array length %q", body)
		}
		if n == -1 {
			r.null = true
			return r, nil
		}
		r.elems = make([]respReply, n)
		for i := range r.elems {
			if r.elems[i], err = c.read(depth + 1); err != nil {
				return respReply{}, err
			}
		}
	default:
		return respReply{}, fmt.Errorf("resp: unexpected reply type %q (is the connection in RESP3?)", r.kind)
	}
	return r, nil
}
