package diagpage

// Linux: TCP_INFO shows what the browser sent and what it acknowledged.
var platform = capabilities{tcpInfo: true}
