package pmtu

// Linux: TCP_MAXSEG and TCP_INFO through golang.org/x/sys/unix.

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clampSupported reports whether setsockopt(TCP_MAXSEG) before connect
// works on this platform.
const clampSupported = true

func setMSS(c syscall.RawConn, mss int) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG, mss)
	}); err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("setsockopt", serr)
	}
	return nil
}

func getMSS(c syscall.RawConn) (int, error) {
	var (
		mss  int
		serr error
	)
	if err := c.Control(func(fd uintptr) {
		mss, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, os.NewSyscallError("getsockopt", serr)
	}
	return mss, nil
}

func getTCPInfo(c syscall.RawConn) (TCPInfo, error) {
	var (
		ti   *unix.TCPInfo
		serr error
	)
	if err := c.Control(func(fd uintptr) {
		ti, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return TCPInfo{}, err
	}
	if serr != nil {
		return TCPInfo{}, os.NewSyscallError("getsockopt", serr)
	}
	return convTCPInfo(ti), nil
}

func convTCPInfo(ti *unix.TCPInfo) TCPInfo {
	us := func(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
	ms := func(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }
	return TCPInfo{
		State:       ti.State,
		CAState:     ti.Ca_state,
		Retransmits: ti.Retransmits,
		Probes:      ti.Probes,
		Backoff:     ti.Backoff,
		Options:     ti.Options,

		RTO:    us(ti.Rto),
		ATO:    us(ti.Ato),
		RTT:    us(ti.Rtt),
		RTTVar: us(ti.Rttvar),
		MinRTT: us(ti.Min_rtt),

		SndMSS: ti.Snd_mss,
		RcvMSS: ti.Rcv_mss,
		AdvMSS: ti.Advmss,
		PMTU:   ti.Pmtu,

		Unacked:      ti.Unacked,
		Sacked:       ti.Sacked,
		Lost:         ti.Lost,
		Retrans:      ti.Retrans,
		TotalRetrans: ti.Total_retrans,
		TotalRTO:     uint32(ti.Total_rto),

		SndCwnd:     ti.Snd_cwnd,
		SndSsthresh: ti.Snd_ssthresh,
		SndWnd:      ti.Snd_wnd,
		RcvWnd:      ti.Rcv_wnd,
		NotSent:     ti.Notsent_bytes,

		BytesSent:     ti.Bytes_sent,
		BytesAcked:    ti.Bytes_acked,
		BytesReceived: ti.Bytes_received,
		BytesRetrans:  ti.Bytes_retrans,

		SegsOut:     ti.Segs_out,
		SegsIn:      ti.Segs_in,
		DataSegsOut: ti.Data_segs_out,
		DataSegsIn:  ti.Data_segs_in,
		Delivered:   ti.Delivered,
		DSACKDups:   ti.Dsack_dups,
		RcvOOOPack:  ti.Rcv_ooopack,

		LastDataSent: ms(ti.Last_data_sent),
		LastDataRecv: ms(ti.Last_data_recv),
		LastAckRecv:  ms(ti.Last_ack_recv),
	}
}
