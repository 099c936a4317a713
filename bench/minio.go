package bench

import (
	"errors"
	"fmt"
	"os"

	"github.com/ferryhq/ferry/internal/minioserver"
)

// minio is the MinIO the upload bench starts for itself when no S3
// endpoint is given, with its data in a temporary folder.
type minio struct {
	*minioserver.Server
	dir string
}

func startMinIO() (*minio, error) {
	bin, err := minioserver.Find()
	if err != nil {
		return nil, fmt.Errorf("no minio binary (give --s3-endpoint, or build it with `make test-deps`): %w", err)
	}
	dir, err := os.MkdirTemp("", "ferry-bench-minio-")
	if err != nil {
		return nil, err
	}
	srv, err := minioserver.New(bin, dir)
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &minio{srv, dir}, nil
}

// Close stops MinIO and removes its data.
func (m *minio) Close() error {
	return errors.Join(m.Stop(), os.RemoveAll(m.dir))
}
