// Command cached shows the watch-fed cache: it reads a secret every
// second and prints where the answer came from, so that a PutSecretValue
// made meanwhile is seen on the next read without waiting for a TTL.
//
//	COFFER_ACCESS_KEY_ID=… COFFER_SECRET_ACCESS_KEY=… \
//	  go run ./client/examples/cached -region us-east-1 -endpoints 127.0.0.1:8443 -secret app/db
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/cofferhq/coffer/client"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cached:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cached", flag.ContinueOnError)
	region := fs.String("region", "us-east-1", "the region of the endpoints")
	endpoints := fs.String("endpoints", "127.0.0.1:8443", "comma-separated node API addresses")
	secret := fs.String("secret", "app/db", "the secret to read")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := client.New(client.Config{
		Regions:     []client.Region{{Name: *region, Endpoints: strings.Split(*endpoints, ",")}},
		Credentials: client.Credentials{AccessKeyID: os.Getenv("COFFER_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("COFFER_SECRET_ACCESS_KEY")},
		Watch:       true,
		CacheTTL:    10 * time.Minute,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		s, err := c.GetSecretValue(ctx, *secret)
		if err != nil {
			return err
		}
		st := c.Stats()
		// The value itself is not printed: only which version is current.
		fmt.Printf("%s version %s (hits %d, misses %d, evictions %d)\n", s.Name, s.VersionID, st.Hits, st.Misses, st.Evictions)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
