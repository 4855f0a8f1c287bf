package pgnotify_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"

	"github.com/resilience-go/resilience"
	"github.com/resilience-go/resilience/contrib/pgnotify"
	"github.com/resilience-go/resilience/outbox"
)

// A relay that publishes as soon as any process commits a message, and
// polls only once a minute for what no notification announced.
func ExampleNew() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dsn := os.Getenv("DATABASE_URL")
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	// Writers enqueue with this Dialect: each commit notifies "outbox".
	d := outbox.Postgres.WithNotify("outbox")

	w, err := pgnotify.New(dsn, "outbox")
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close(context.Background())
	publish := outbox.PublisherFunc(func(ctx context.Context, m outbox.Message) error {
		log.Printf("%s %s", m.Topic, m.ID)
		return nil
	})
	relay := outbox.New(db, d).NewRelay(publish, outbox.WithWaker(w), outbox.WithPollInterval(time.Minute),
		outbox.WithObserver(resilience.ObserverFunc(func(_ context.Context, e resilience.Event) {
			if e.Kind == resilience.Error {
				log.Print(e.Err) // such as "outbox: waker: pgnotify: connect: ..."
			}
		})))
	if err := relay.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// A Waker from a parsed configuration, which also logs who notified.
func ExampleNewFromConfig() {
	cfg, err := pgx.ParseConfig(os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "outbox-relay"
	cfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		log.Printf("notified by backend %d on %s", n.PID, n.Channel)
	}
	w := pgnotify.NewFromConfig(cfg, "outbox")
	defer w.Close(context.Background())
	_ = outbox.WithWaker(w)
}

// Wait without a relay: refresh a cache whenever the channel is notified,
// and after each reconnection, which may have missed a notification.
func ExampleWaker_Wait() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	w, err := pgnotify.New(os.Getenv("DATABASE_URL"), "prices_changed")
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close(context.Background())
	refresh := func(context.Context) { /* reload the prices */ }
	for {
		err := w.Wait(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Print(err) // the next Wait connects again
			t := time.NewTimer(time.Second)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		default:
			refresh(ctx)
		}
	}
}

// A Waker connects on its first Wait, and never once it is closed.
func ExampleWaker_Close() {
	w, err := pgnotify.New("postgres://relay@db.internal:5432/app", "outbox")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(w.Close(context.Background()))
	err = w.Wait(context.Background())
	fmt.Println(err, errors.Is(err, pgnotify.ErrClosed))
	// Output:
	// <nil>
	// pgnotify: waker closed true
}
