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
