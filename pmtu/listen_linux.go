package pmtu

// listenClampSupported reports whether TCP_MAXSEG set on a listening socket
// clamps the connections it accepts (Linux: tcp_conn_request copies the
// listener's user_mss; measured by TestListenConfigWithMTU).
const listenClampSupported = true
