/* Listening sockets shared by several event loops.
 *
 * libuv 1.44 has no UV_TCP_REUSEPORT flag, so the socket is made here and handed to
 * uv_tcp_open: each worker gets its own listener on the same address (SO_REUSEPORT) and the
 * kernel spreads new connections across them, with no lock on the accept path. */
#ifndef SB_HTTP_LISTEN_H
#define SB_HTTP_LISTEN_H

/* Creates a non-blocking, close-on-exec listening socket on host:port (a numeric address or
 * a name; port 0 picks a free port, reported in *bound_port, which may be NULL). Later calls
 * with the port returned bind the same port again. Returns 0 and sets *fd, or a negative errno
 * (-EINVAL when the host does not resolve). Any thread. */
int sb_listen_reuseport(const char *host, int port, int backlog, int *fd, int *bound_port);

#endif
