package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PortRecord is the port of the record server (StartRecordServer).
const PortRecord = 9444

// Names of the record server and client.
const (
	recordServerName = "lab-record-echo"
	recordClientName = "lab-record-send"
)

// RecordArgs are the arguments of Lab.SendRecord's client.
type RecordArgs struct {
	Addr string
	// Size is the record's size in bytes, its 5-byte header included.
	Size int
	// Timeout bounds the dial and the wait for the server's answer.
	Timeout time.Duration
}

// RecordResult is what became of a record sent with Lab.SendRecord.
type RecordResult struct {
	// OK: the server received the whole record and said so.
	OK bool
	// Received is how many bytes of the record the server reported.
	Received int
	Reset    bool   // the connection was reset
	TimedOut bool   // no answer within Timeout
	Err      string `json:",omitempty"`
}

func init() {
	RegisterServer(recordServerName, recordServer)
	RegisterClient(recordClientName, recordClient)
}

// StartRecordServer starts, on PortRecord in both families, a server (the
// test binary re-executed in the server namespace) that reads one TLS
// record per connection and answers "ok N" once it has all N bytes: a
// probe of what a middlebox does to a hello of a given size, without TLS.
func (l *Lab) StartRecordServer() (*Process, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, _, err := l.StartServer(ctx, recordServerName, []string{l.Addr(IPv4, PortRecord), l.Addr(IPv6, PortRecord)})
	return p, err
}

// SendRecord connects from the client namespace to the record server in
// family f and writes, in one write, a TLS handshake record of size bytes
// (header included; a ClientHello type byte, then zeros): the kernel cuts
// it into segments of the connection's MSS. It waits at most timeout for
// the server's answer. A record that does not arrive is not an error: see
// RecordResult.
func (l *Lab) SendRecord(ctx context.Context, f Family, size int, timeout time.Duration) (RecordResult, error) {
	var res RecordResult
	raw, err := l.RunClient(ctx, recordClientName, RecordArgs{Addr: l.Addr(f, PortRecord), Size: size, Timeout: timeout})
	if err != nil {
		return res, err
	}
	err = json.Unmarshal(raw, &res)
	return res, err
}

// recordServer serves every address in args (a JSON list) until ctx ends.
func recordServer(ctx context.Context, raw json.RawMessage, ready func(any)) error {
	var addrs []string
	if err := json.Unmarshal(raw, &addrs); err != nil {
		return err
	}
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		go acceptRecords(ln)
		defer ln.Close()
	}
	ready(map[string]any{"addrs": addrs, "pid": os.Getpid()})
	<-ctx.Done()
	return nil
}

func acceptRecords(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go answerRecord(c)
	}
}

// answerRecord reads one record and answers with the bytes received.
func answerRecord(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return
	}
	n, _ := io.CopyN(io.Discard, c, int64(hdr[3])<<8|int64(hdr[4]))
	fmt.Fprintf(c, "ok %d\n", n+5)
}

func recordClient(ctx context.Context, raw json.RawMessage) (any, error) {
	var a RecordArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, err
	}
	if a.Size < 5 || a.Size > MaxHelloLimit {
		return nil, fmt.Errorf("record size %d out of range 5..%d", a.Size, MaxHelloLimit)
	}
	ctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	var res RecordResult
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a.Addr)
	if err == nil {
		defer c.Close()
		if dl, ok := ctx.Deadline(); ok {
			c.SetDeadline(dl)
		}
		err = exchangeRecord(c, a.Size, &res)
	}
	if err != nil {
		var ne net.Error
		res.Err = err.Error()
		res.Reset = errors.Is(err, syscall.ECONNRESET)
		res.TimedOut = errors.As(err, &ne) && ne.Timeout()
	}
	return res, nil
}

// exchangeRecord writes a fake ClientHello record of size bytes and reads
// the server's answer into res.
func exchangeRecord(c net.Conn, size int, res *RecordResult) error {
	rec := make([]byte, size)
	body := size - 5
	copy(rec, []byte{0x16, 0x03, 0x01, byte(body >> 8), byte(body), 0x01})
	if _, err := c.Write(rec); err != nil {
		return err
	}
	line, err := io.ReadAll(io.LimitReader(c, 64))
	if err != nil {
		return err
	}
	got, ok := strings.CutPrefix(strings.TrimSpace(string(line)), "ok ")
	if !ok {
		return fmt.Errorf("unexpected answer %q", line)
	}
	res.Received, err = strconv.Atoi(got)
	res.OK = err == nil && res.Received == size
	return err
}
