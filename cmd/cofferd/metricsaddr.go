package main

import (
	"net"
	"strconv"
)

// offsetPort is addr with its port moved by off (node i of a dev region
// listens 10*i ports above the address given); an address without a
// numeric port is returned as it is, and fails at listen.
func offsetPort(addr string, off int) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	p, err := strconv.Atoi(port)
	if err != nil || p == 0 {
		return addr
	}
	return net.JoinHostPort(host, strconv.Itoa(p+off))
}
