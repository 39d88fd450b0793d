// Command healthcheck is the container health check of the Compose stack
// (deploy/compose). The causeway image is scratch: no shell, no curl, and
// Compose, unlike Kubernetes, probes from inside the container. It GETs
// one URL and exits 0 on a 2xx answer and 1 on anything else (Docker
// reserves 2), printing why for `docker inspect`.
//
//	healthcheck http://127.0.0.1:9100/readyz
//
// deploy/Dockerfile builds it next to the causeway binary.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: healthcheck URL")
		os.Exit(1)
	}
	if err := check(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func check(url string) error {
	// A local address: no proxy from the environment, a short deadline.
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{}}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, body)
	}
	fmt.Printf("GET %s: %s\n", url, resp.Status)
	return nil
}
