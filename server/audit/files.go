package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// rotatedName is the name the file at path takes when it is rotated as the
// n-th file: "audit.log" becomes "audit.log.000001", "audit.log.000002"...
func rotatedName(path string, n uint64) string {
	return fmt.Sprintf("%s.%06d", path, n)
}

// rotated returns the numbers of path's rotated files, ascending.
func rotated(path string) ([]uint64, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var nums []uint64
	for _, e := range ents {
		suffix, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok || len(suffix) < 6 || strings.Trim(suffix, "0123456789") != "" {
			continue
		}
		n, err := strconv.ParseUint(suffix, 10, 64)
		if err != nil || n == 0 || fmt.Sprintf("%06d", n) != suffix { // only names rotate gives
			continue
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	return nums, nil
}

// Files returns the log at path as the rotated set, oldest first: its
// rotated files by number, then path itself if it exists. It returns an
// empty list, and no error, when there is neither.
func Files(path string) ([]string, error) {
	nums, err := rotated(path)
	if err != nil {
		return nil, err
	}
	files := make([]string, 0, len(nums)+1)
	for _, n := range nums {
		files = append(files, rotatedName(path, n))
	}
	if _, err := os.Lstat(path); err == nil {
		files = append(files, path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return files, nil
}
