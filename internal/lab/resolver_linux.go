package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// resolverName is the registered name of the lab's DNS server.
const resolverName = "lab-resolver"

func init() {
	RegisterServer(resolverName, resolver)
}

// resolverArgs are the arguments of the lab's DNS server.
type resolverArgs struct {
	Addr  string // UDP host:port to serve
	Zone  string // the name answered, and every name under it
	A     netip.Addr
	AAAA  netip.Addr
	Delay time.Duration // before each A or AAAA answer in Zone
}

// ResolverEvent is a query the Squid scenario's DNS server got, or its
// answer going out (Lab.ResolverLog).
type ResolverEvent struct {
	Time   time.Time
	Answer bool   // false: the query came in; true: the answer went out
	ID     uint16 // the query's DNS id
	Name   string // lower case, without the final dot
	Type   string // "A", "AAAA", "PTR", ...
}

// resolver is a tiny authoritative DNS server: A and AAAA records of
// a.Zone and every name under it, answered after a.Delay each (a query's
// own delay: it does not wait for other queries); any other query is
// answered at once, with no record (NXDOMAIN outside the zone). It
// writes one JSON ResolverEvent per line on stdout.
func resolver(ctx context.Context, raw json.RawMessage, ready func(any)) error {
	var a resolverArgs
	if err := json.Unmarshal(raw, &a); err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", a.Addr)
	if err != nil {
		return err
	}
	defer pc.Close()
	go func() {
		<-ctx.Done()
		pc.Close()
	}()
	zone := strings.ToLower(strings.TrimSuffix(a.Zone, "."))
	var (
		mu  sync.Mutex
		enc = json.NewEncoder(os.Stdout)
		wg  sync.WaitGroup
	)
	logEvent := func(answer bool, id uint16, q dnsmessage.Question) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(ResolverEvent{Time: time.Now(), Answer: answer, ID: id,
			Name: strings.ToLower(strings.TrimSuffix(q.Name.String(), ".")),
			Type: strings.TrimPrefix(q.Type.String(), "Type")})
	}
	ready(map[string]any{"addr": a.Addr, "pid": os.Getpid()})
	defer wg.Wait()
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil || h.Response {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		logEvent(false, h.ID, q)
		name := strings.ToLower(strings.TrimSuffix(q.Name.String(), "."))
		inZone := name == zone || strings.HasSuffix(name, "."+zone)
		delay := time.Duration(0)
		if inZone && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeAAAA) {
			delay = a.Delay
		}
		wg.Go(func() {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			out, err := resolverAnswer(h.ID, q, inZone, a.A, a.AAAA)
			if err != nil {
				fmt.Fprintln(os.Stderr, "lab: resolver:", err)
				return
			}
			if _, err := pc.WriteTo(out, from); err == nil {
				logEvent(true, h.ID, q)
			}
		})
	}
}

// resolverAnswer builds the answer to q: v4 or v6 for A or AAAA in the
// zone (TTL 1 s), no record for other types, NXDOMAIN outside it.
func resolverAnswer(id uint16, q dnsmessage.Question, inZone bool, v4, v6 netip.Addr) ([]byte, error) {
	h := dnsmessage.Header{ID: id, Response: true, Authoritative: true}
	if !inZone {
		h.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, h)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
	switch {
	case inZone && q.Type == dnsmessage.TypeA:
		if err := b.AResource(rh, dnsmessage.AResource{A: v4.As4()}); err != nil {
			return nil, err
		}
	case inZone && q.Type == dnsmessage.TypeAAAA:
		if err := b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: v6.As16()}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}
