package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"time"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/server"
)

// startServer runs a ferry server for the examples, as "ferry serve" would.
func startServer() (url string, stop func()) {
	_, url, stop = serve(server.Config{})
	return url, stop
}

// serve runs a ferry server with cfg.
func serve(cfg server.Config) (srv *server.Server, url string, stop func()) {
	srv, err := server.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	return srv, hs.URL, func() {
		_ = srv.Shutdown(context.Background())
		hs.Close()
	}
}

// Two clients meet in a room: one emits, the other's handler prints.
func Example() {
	url, stop := startServer()
	defer stop()
	ctx := context.Background()

	alice, err := client.Dial(ctx, client.Config{URL: url, Name: "alice"})
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := client.Dial(ctx, client.Config{URL: url, Name: "bob"})
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	got := make(chan string)
	bob.On("chat", func(e client.Event) {
		var msg struct{ Text string }
		if err := e.Decode(&msg); err != nil {
			log.Print(err)
			return
		}
		got <- fmt.Sprintf("%s in %s: %s", e.From.Name, e.Room, msg.Text)
	})
	for _, c := range []*client.Client{alice, bob} {
		if _, err := c.Join(ctx, "lobby"); err != nil {
			log.Fatal(err)
		}
	}
	if err := alice.Emit(ctx, "lobby", "chat", map[string]string{"text": "hello"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-got)
	// Output: alice in lobby: hello
}

// Dial with every option spelled out; zero values mean the defaults.
func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{
		URL:   "https://ferry.example.com",
		Name:  "alice",
		Token: os.Getenv("FERRY_TOKEN"), // empty: anonymous
		Reconnect: client.Backoff{
			Initial:  time.Second,
			Max:      5 * time.Second,
			Factor:   2,
			Jitter:   0.5,
			Attempts: 0, // forever
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println("connected as", c.User())
}

// Connection changes arrive as lifecycle events named as in Socket.IO.
func ExampleClient_OnLifecycle() {
	url, stop := startServer()
	defer stop()
	c, err := client.Dial(context.Background(), client.Config{URL: url})
	if err != nil {
		log.Fatal(err)
	}
	c.OnLifecycle(client.LifecycleDisconnect, func(l client.Lifecycle) {
		fmt.Println("disconnect:", l.Reason)
	})
	c.OnLifecycle(client.LifecycleReconnectAttempt, func(l client.Lifecycle) {
		fmt.Printf("attempt %d after %v\n", l.Attempt, l.Delay)
	})
	c.OnLifecycle(client.LifecycleReconnect, func(l client.Lifecycle) {
		fmt.Println("back after", l.Attempt, "attempts, rooms joined again")
	})
	c.Close()
	<-c.Done() // the handlers have run
	// Output: disconnect: io client disconnect
}

// A server's error frame comes back as a *protocol.Error with a code to
// branch on.
func ExampleClient_Emit_error() {
	url, stop := startServer()
	defer stop()
	ctx := context.Background()
	c, err := client.Dial(ctx, client.Config{URL: url})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Join(ctx, "lobby"); err != nil {
		log.Fatal(err)
	}
	if err := c.Leave(ctx, "lobby"); err != nil {
		log.Fatal(err)
	}

	err = c.Emit(ctx, "lobby", "chat", "anyone?")
	var perr *protocol.Error
	if errors.As(err, &perr) {
		fmt.Println(perr.Code)
	}
	if errors.Is(err, &protocol.Error{Code: protocol.CodeNotMember}) {
		fmt.Println("join the room first")
	}
	// Output:
	// not_member
	// join the room first
}

// Direct messages go to every connection of a user, or to one connection.
func ExampleClient_EmitTo() {
	url, stop := startServer()
	defer stop()
	ctx := context.Background()
	alice, err := client.Dial(ctx, client.Config{URL: url, Name: "alice"})
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	bob, err := client.Dial(ctx, client.Config{URL: url, Name: "bob"})
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	got := make(chan client.Event)
	bob.On("dm", func(e client.Event) { got <- e })
	n, err := alice.EmitTo(ctx, client.Target{User: bob.User()}, "dm", "psst")
	if err != nil {
		log.Fatal(err)
	}
	e := <-got
	fmt.Println(n, "connection;", e.Room == "user:"+bob.User(), string(e.Data))
	// Output: 1 connection; true "psst"
}

// Presence reports who comes and goes in the rooms the client is in.
func ExampleClient_OnPresence() {
	url, stop := startServer()
	defer stop()
	ctx := context.Background()
	alice, err := client.Dial(ctx, client.Config{URL: url, Name: "alice"})
	if err != nil {
		log.Fatal(err)
	}
	defer alice.Close()
	seen := make(chan client.Presence)
	alice.OnPresence(func(p client.Presence) { seen <- p })
	if _, err := alice.Join(ctx, "lobby"); err != nil {
		log.Fatal(err)
	}

	bob, err := client.Dial(ctx, client.Config{URL: url, Name: "bob"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := bob.Join(ctx, "lobby"); err != nil {
		log.Fatal(err)
	}
	bob.Close()
	for range 2 {
		p := <-seen
		fmt.Println(p.Name, p.Action, p.Room)
	}
	// Output:
	// bob join lobby
	// bob leave lobby
}

// Ping measures the round trip with the protocol's ping frame.
func ExampleClient_Ping() {
	url, stop := startServer()
	defer stop()
	c, err := client.Dial(context.Background(), client.Config{URL: url})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	rtt, err := c.Ping(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rtt < time.Second)
	// Output: true
}

// The reconnection delays without randomization: 1s doubling up to 5s.
func ExampleBackoff_Delay() {
	b := client.Backoff{Jitter: -1}
	for n := 1; n <= 5; n++ {
		fmt.Print(b.Delay(n), " ")
	}
	fmt.Println()
	// Output: 1s 2s 4s 5s 5s
}
