// Command failover reads one secret in a loop through the Coffer client
// and reports every error: run it while a node (or the leader) is lost to
// see the client's retries carry it across the failover.
//
//	COFFER_ACCESS_KEY_ID=… COFFER_SECRET_ACCESS_KEY=… \
//	  go run ./client/examples/failover -region us-east-1 -endpoints 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003 -secret app/db -reads 2000
package main

import (
	"context"
	"errors"
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
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("failover", flag.ContinueOnError)
	region := fs.String("region", "us-east-1", "the region of the endpoints")
	endpoints := fs.String("endpoints", "127.0.0.1:8443", "comma-separated node API addresses")
	secret := fs.String("secret", "", "the secret to read")
	reads := fs.Int("reads", 1000, "how many reads to make")
	interval := fs.Duration("interval", 5*time.Millisecond, "pause between reads")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		return errors.New("-secret is required")
	}
	c, err := client.New(client.Config{
		Regions:     []client.Region{{Name: *region, Endpoints: strings.Split(*endpoints, ",")}},
		Credentials: client.Credentials{AccessKeyID: os.Getenv("COFFER_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("COFFER_SECRET_ACCESS_KEY")},
		// No cache: every read goes to the region, so the failover is felt.
		CacheTTL: -1,
		Retry:    client.Retry{MaxAttempts: 40, MaxDelay: time.Second},
	})
	if err != nil {
		return err
	}
	defer c.Close()
	failures := 0
	for i := range *reads {
		if _, err := c.GetSecretValue(ctx, *secret); err != nil {
			failures++
			fmt.Printf("read %d: %v\n", i, err)
		} else if i%100 == 0 {
			fmt.Printf("read %d ok\n", i)
		}
		time.Sleep(*interval)
	}
	st := c.Stats()
	fmt.Printf("reads=%d errors=%d retries=%d\n", *reads, failures, st.Retries)
	if failures > 0 {
		return fmt.Errorf("%d of %d reads failed", failures, *reads)
	}
	return nil
}
