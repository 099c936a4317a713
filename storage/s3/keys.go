package s3

import (
	"fmt"

	"github.com/ferryhq/ferry/storage"
)

func checkKey(key string) error {
	if err := storage.CheckKey(key); err != nil {
		return fmt.Errorf("storage/s3: %w", err)
	}
	return nil
}
