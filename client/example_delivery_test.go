package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/protocol"
)

// A reader saves its position after each event; a later run resumes from
// it and gets exactly the events it missed.
func ExampleClient_JoinFrom() {
	url, stop := startServer()
	defer stop()
	ctx := context.Background()
	writer, err := client.Dial(ctx, client.Config{URL: url})
	if err != nil {
		log.Fatal(err)
	}
	defer writer.Close()
	if _, err := writer.Join(ctx, "news"); err != nil {
		log.Fatal(err)
	}
	_ = writer.Emit(ctx, "news", "item", "one")

	// The first run starts from whatever the room keeps (a zero position),
	// saves its position and stops.
	first, err := client.Dial(ctx, client.Config{URL: url})
	if err != nil {
		log.Fatal(err)
	}
	j, err := first.JoinFrom(ctx, "news", protocol.Position{})
	if err != nil {
		log.Fatal(err)
	}
	saved := protocol.Position{Epoch: j.Epoch, Seq: j.Seq}
	first.Close()

	// Meanwhile...
	_ = writer.Emit(ctx, "news", "item", "two")
	_ = writer.Emit(ctx, "news", "item", "three")

	second, err := client.New(client.Config{URL: url})
	if err != nil {
		log.Fatal(err)
	}
	defer second.Close()
	got := make(chan string, 2)
	second.On("item", func(e client.Event) { got <- string(e.Data) })
	if err := second.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	j, err = second.JoinFrom(ctx, "news", saved)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(j.Recovery, j.Replayed, <-got, <-got)
	// Output: ok 2 "two" "three"
}

// Publish returns the event's place in the room; with WithReceipt the
// sender hears of every member whose client confirmed it.
func ExampleClient_Publish() {
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
	for _, c := range []*client.Client{alice, bob} {
		if _, err := c.Join(ctx, "lobby"); err != nil {
			log.Fatal(err)
		}
	}
	receipts := make(chan protocol.Receipt, 1)
	alice.OnReceipt(func(r protocol.Receipt) { receipts <- r })

	d, err := alice.Publish(ctx, client.Target{Room: "lobby"}, "photo", "cat.jpg", client.WithReceipt())
	if err != nil {
		log.Fatal(err)
	}
	r := <-receipts
	fmt.Println(r.Name, "has event", r.Seq == d.Seq, "count", r.Count)
	// Output: bob has event true count 1
}
