package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Ports of the PostgreSQL servers, on the server's addresses.
const (
	PortPostgres      = 5432 // PostgreSQL with ssl=on and the long chain; hostssl only
	PortPostgresNoSSL = 5433 // PostgreSQL with ssl=off: it answers an SSLRequest with 'N'
)

// PostgresUser is the database user the lab's PostgreSQL servers trust
// (and their database), without a password.
const PostgresUser = "postgres"

// postgresBin returns the directory of Debian's PostgreSQL binaries
// (/usr/lib/postgresql/N/bin, the highest N), or an error saying what to
// install.
func postgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		return pgMajor(a) - pgMajor(b)
	})
	for _, d := range slices.Backward(dirs) {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("lab: no PostgreSQL server in /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)")
}

func pgMajor(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// PostgresMissing says why StartPostgres cannot run here, or returns "".
func PostgresMissing() string {
	if _, err := postgresBin(); err != nil {
		return err.Error()
	}
	if _, err := user.Lookup("postgres"); err != nil {
		return "lab: no user postgres (Debian's postgresql package creates it)"
	}
	if toolPath("setpriv") == "setpriv" {
		return "lab: no setpriv (util-linux)"
	}
	return ""
}

// StartPostgres runs Debian's PostgreSQL in the server namespace, as the
// unprivileged user postgres, with a fresh cluster under Dir() (initdb,
// trust authentication for PostgresUser), listening on the server's IPv4
// and IPv6 addresses. With ssl, it listens on PortPostgres with ssl=on, the
// long chain (RSA-4096 leaf and two intermediates, over 4 KB: a server
// flight no 1400-byte path carries in one packet) and only hostssl lines in
// pg_hba.conf, so a connection without TLS is refused; without, on
// PortPostgresNoSSL with ssl=off, answering an SSLRequest with 'N'. The
// server is the lab's process (stopped by its PID on Stop or Close).
func (l *Lab) StartPostgres(ssl bool) (*Process, error) {
	if why := PostgresMissing(); why != "" {
		return nil, errors.New(why)
	}
	bin, _ := postgresBin()
	usr, err := user.Lookup("postgres")
	if err != nil {
		return nil, err
	}
	port := PortPostgresNoSSL
	if ssl {
		port = PortPostgres
	}
	dir := filepath.Join(l.dir, "postgres-"+strconv.Itoa(port))
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := allowTraverse(l.dir); err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(usr.Uid)
	gid, _ := strconv.Atoi(usr.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	asUser := []string{"--reuid=" + usr.Uid, "--regid=" + usr.Gid, "--clear-groups", "--pdeathsig=KILL"}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	initdb := exec.CommandContext(ctx, toolPath("setpriv"), append(asUser, filepath.Join(bin, "initdb"),
		"-D", data, "-U", PostgresUser, "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")...)
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("lab: initdb: %w\n%s", err, tail(string(out), 4096))
	}

	opts := []string{
		"-D", data, "-p", strconv.Itoa(port),
		"-c", fmt.Sprintf("listen_addresses=%s,%s", serverIPv4, serverIPv6),
		"-c", "unix_socket_directories=" + dir,
		"-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=50",
		"-c", "log_connections=on", "-c", "logging_collector=off",
	}
	hba := "host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n"
	if ssl {
		pki, err := l.PKI()
		if err != nil {
			return nil, err
		}
		// PostgreSQL reads its key only if its user owns it, mode 0600.
		cert, key := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
		for dst, src := range map[string]string{cert: pki.LongChainFile, key: pki.LongKeyFile} {
			b, err := os.ReadFile(src)
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				return nil, err
			}
			if err := os.Chown(dst, uid, gid); err != nil {
				return nil, err
			}
		}
		opts = append(opts, "-c", "ssl=on", "-c", "ssl_cert_file="+cert, "-c", "ssl_key_file="+key)
		hba = "hostssl all all 0.0.0.0/0 trust\nhostssl all all ::/0 trust\n"
	} else {
		opts = append(opts, "-c", "ssl=off")
	}
	hbaFile := filepath.Join(data, "pg_hba.conf")
	if err := os.WriteFile(hbaFile, []byte("local all all trust\n"+hba), 0o600); err != nil {
		return nil, err
	}
	if err := os.Chown(hbaFile, uid, gid); err != nil {
		return nil, err
	}

	p, err := l.Start(Server, toolPath("setpriv"), append(append(asUser, filepath.Join(bin, "postgres")), opts...)...)
	if err != nil {
		return nil, err
	}
	want := []string{l.Addr(IPv4, port), l.Addr(IPv6, port)}
	if err := l.waitListening(p, want, 30*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("lab: postgres: %w\noutput: %s", err, tail(p.Output(), 4096))
	}
	return p, nil
}

// PostgresConnections counts the client connections p, a server from
// StartPostgres, has received so far (its log_connections lines).
func PostgresConnections(p *Process) int {
	return strings.Count(p.Output(), "connection received: host=")
}
