package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// connectTimeout bounds the wait for a broker's answer when connecting.
const connectTimeout = 3 * time.Second

// A broker carries quotes from the ticker to its subscribers: NATS core
// pub/sub or MQTT at QoS 0, both at most once.
type broker interface {
	// publish sends data on the topic of symbol.
	publish(symbol string, data []byte) error
	// subscribe calls handle with the data of every quote published from
	// now on, one at a time; handle must not block. unsubscribe ends the
	// subscription.
	subscribe(handle func(data []byte)) (unsubscribe func(), err error)
	// flush returns once the broker has taken every quote published so far.
	flush() error
	// topics names the topic of a symbol and the filter the subscribers use.
	topics() (one, all string)
	close()
}

// dial connects to the broker at rawURL, nats:// or mqtt://, whose topics
// start with prefix; its error says which address it tried and how to
// start a broker there.
func dial(rawURL, prefix string) (broker, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("-broker %q: want nats://host:port or mqtt://host:port", rawURL)
	}
	switch u.Scheme {
	case "nats":
		b, err := dialNATS(rawURL, prefix)
		if err != nil {
			return nil, fmt.Errorf("no NATS server answers at %s: %w\n%s", hostPort(u, "4222"), err, natsHint)
		}
		return b, nil
	case "mqtt":
		b, err := dialMQTT(u, prefix)
		if err != nil {
			return nil, fmt.Errorf("no MQTT broker answers at %s: %w\n%s", hostPort(u, "1883"), err, mqttHint)
		}
		return b, nil
	}
	return nil, fmt.Errorf("-broker %q: scheme %q: want nats:// or mqtt://", rawURL, u.Scheme)
}

// What to do when no broker answers.
const (
	natsHint = "Start one with `nats-server` or `docker run -p 4222:4222 nats`, point -broker at one,\n" +
		"or run with -embedded for a NATS server in this process."
	mqttHint = "Start one with `mosquitto -p 1883` or\n" +
		"`docker run -p 1883:1883 eclipse-mosquitto:2 mosquitto -c /mosquitto-no-auth.conf`,\n" +
		"point -broker at one, or run with -embedded for a NATS server in this process."
)

// hostPort returns u's host and port, with port def if it has none.
func hostPort(u *url.URL, def string) string {
	if u.Port() != "" {
		return u.Host
	}
	return u.Hostname() + ":" + def
}

// embedded is a NATS server in this process, on a free loopback port.
type embedded struct{ srv *server.Server }

// startEmbedded starts a NATS server on a free loopback port.
func startEmbedded() (*embedded, error) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("embedded NATS server: not ready after 10s")
	}
	return &embedded{srv: srv}, nil
}

// url returns the URL its clients connect to.
func (e *embedded) url() string { return e.srv.ClientURL() }

// stop shuts the server down and waits until it is down.
func (e *embedded) stop() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// natsBroker is NATS core pub/sub: the subject of a symbol is
// <prefix>.<symbol>, and the subscribers listen on <prefix>.>. publish may
// be called from one goroutine while subscribe and close are called from
// another, but not at once.
type natsBroker struct {
	url, prefix string
	pub         *nats.Conn
	subs        []*nats.Conn // a connection per subscriber, as separate processes would have
}

func dialNATS(url, prefix string) (*natsBroker, error) {
	nc, err := connectNATS(url)
	if err != nil {
		return nil, err
	}
	return &natsBroker{url: url, prefix: prefix, pub: nc}, nil
}

func connectNATS(url string) (*nats.Conn, error) {
	return nats.Connect(url, nats.Name("realtime"), nats.Timeout(connectTimeout), nats.NoReconnect())
}

func (b *natsBroker) publish(symbol string, data []byte) error {
	return b.pub.Publish(b.prefix+"."+symbol, data)
}

func (b *natsBroker) subscribe(handle func([]byte)) (func(), error) {
	nc, err := connectNATS(b.url)
	if err != nil {
		return nil, err
	}
	b.subs = append(b.subs, nc)
	sub, err := nc.Subscribe(b.prefix+".>", func(m *nats.Msg) { handle(m.Data) })
	if err == nil {
		err = nc.Flush() // the server knows of the subscription
	}
	if err != nil {
		return nil, err
	}
	return func() { sub.Unsubscribe() }, nil //nolint:errcheck // the connection closes next
}

func (b *natsBroker) flush() error { return b.pub.Flush() }

func (b *natsBroker) topics() (one, all string) { return b.prefix + ".<symbol>", b.prefix + ".>" }

func (b *natsBroker) close() {
	b.pub.Close()
	for _, nc := range b.subs {
		nc.Close()
	}
}

// mqttBroker is MQTT at QoS 0: the topic of a symbol is <prefix>/<symbol>,
// with the dots of the prefix turned into slashes, and the subscribers
// listen on <prefix>/#. Its client IDs are the prefix, with its dots, and
// -pub or -sub<n>. Its methods may be called as natsBroker's.
type mqttBroker struct {
	broker     string // tcp://host:port
	prefix, id string // of the topics and the client IDs
	pub        mqtt.Client
	subs       []mqtt.Client
}

func dialMQTT(u *url.URL, prefix string) (*mqttBroker, error) {
	b := &mqttBroker{broker: "tcp://" + hostPort(u, "1883"), prefix: strings.ReplaceAll(prefix, ".", "/"), id: prefix}
	c, err := b.connect(b.id + "-pub")
	if err != nil {
		return nil, err
	}
	b.pub = c
	return b, nil
}

func (b *mqttBroker) connect(id string) (mqtt.Client, error) {
	opts := mqtt.NewClientOptions().AddBroker(b.broker).SetClientID(id).
		SetConnectTimeout(connectTimeout).SetAutoReconnect(false).SetCleanSession(true).
		SetOrderMatters(true) // one message at a time, in order: handle does not block
	c := mqtt.NewClient(opts)
	t := c.Connect()
	if !t.WaitTimeout(connectTimeout + time.Second) {
		c.Disconnect(0)
		return nil, errors.New("no answer to CONNECT")
	}
	if err := t.Error(); err != nil {
		return nil, err
	}
	return c, nil
}

func (b *mqttBroker) publish(symbol string, data []byte) error {
	t := b.pub.Publish(b.prefix+"/"+symbol, 0, false, data)
	t.Wait() // QoS 0: until it is written
	return t.Error()
}

func (b *mqttBroker) subscribe(handle func([]byte)) (func(), error) {
	c, err := b.connect(fmt.Sprintf("%s-sub%d", b.id, len(b.subs)+1))
	if err != nil {
		return nil, err
	}
	b.subs = append(b.subs, c)
	topic := b.prefix + "/#"
	t := c.Subscribe(topic, 0, func(_ mqtt.Client, m mqtt.Message) { handle(m.Payload()) })
	if !t.WaitTimeout(connectTimeout) {
		return nil, fmt.Errorf("subscribe %s: no answer", topic)
	}
	if err := t.Error(); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", topic, err)
	}
	return func() { c.Unsubscribe(topic).WaitTimeout(connectTimeout) }, nil
}

// flush has nothing to do: publish has waited until each quote was
// written to the broker.
func (b *mqttBroker) flush() error { return nil }

func (b *mqttBroker) topics() (one, all string) { return b.prefix + "/<symbol>", b.prefix + "/#" }

func (b *mqttBroker) close() {
	b.pub.Disconnect(100)
	for _, c := range b.subs {
		c.Disconnect(100)
	}
}
