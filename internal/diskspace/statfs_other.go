//go:build !unix

package diskspace

import "errors"

// Of cannot measure a volume on this platform.
func Of(string) (Usage, error) {
	return Usage{}, errors.New("free space cannot be measured on this platform")
}
