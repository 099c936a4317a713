package server

import "net/http"

// pageHeaders adds to the page and its files the headers that keep a
// browser from being turned against its user: the page runs only its own
// scripts and styles, talks only to its own server, cannot be framed by
// another site (clickjacking), and sends no referrer (links to other sites
// would carry the page's address along).
func pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "+
			"img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws://"+r.Host+" wss://"+r.Host+"; "+
			"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// crossOrigin adds the CORS headers that let a page on another origin use
// ferry.js (see docs/web-client.md, "A page you can copy"):
//   - /ferry.js may be loaded by any page: browsers load module scripts
//     across origins only with CORS, and the library is public.
//   - /ws answers its origin, also a refused one, so that ferry.js's probe
//     after a failed handshake can read the status (401: the token, 403:
//     the origin or host name, 429/503 and their Retry-After: the caps)
//     and stop retrying instead of looping. The probe carries no
//     credentials, and the answer to a GET of /ws is only an error: whom
//     the server refuses is no secret, and the WebSocket handshake itself
//     still checks the origin.
func crossOrigin(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/ferry.js":
		w.Header().Set("Access-Control-Allow-Origin", "*")
	case "/ws":
		if origin := r.Header.Get("Origin"); origin != "" {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", "Retry-After")
			h.Add("Vary", "Origin")
		}
	}
}
