package disk

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/ferryhq/ferry/storage"
)

func checkKey(key string) error {
	if err := storage.CheckKey(key); err != nil {
		return fmt.Errorf("storage/disk: %w", err)
	}
	return nil
}

func isNotDir(err error) bool {
	return errors.Is(err, syscall.ENOTDIR)
}
