package transfer

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/ferryhq/ferry/storage"
)

// complete verifies the whole file's hash, completes the object, strips
// a JPEG's metadata and makes an image's thumbnail (see previews.go),
// writes the file record and the final manifest, and only then announces
// the file.
func (u *upload) complete() error {
	h, err := restoreHash(u.hash)
	if err != nil {
		return err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	u.mu.Lock()
	declared, wantCRC, fileCRC := u.sha, u.crc, u.fileCRC
	meta := u.metaLocked(sum)
	if u.later {
		// The object was created without its digest, and S3 changes an
		// object's metadata only by copying the whole object: the digest
		// stays in the file's record, and the object keeps what it was
		// created with.
		meta = u.metaLocked("")
	}
	u.mu.Unlock()
	if declared != "" && sum != declared {
		return errorf(CodeChecksumMismatch, "the file's SHA-256 is %s, not %s as declared", sum, declared)
	}
	if got := crcHex(fileCRC); wantCRC != "" && got != wantCRC {
		return errorf(CodeChecksumMismatch, "the file's CRC32C is %s, not %s as given", got, wantCRC)
	}
	var earlier *File
	err = u.retry("complete", false, func(ctx context.Context) error {
		earlier = nil
		if u.mp != nil {
			_, err := u.mp.Complete(ctx, meta)
			if !errors.Is(err, storage.ErrNotFound) {
				return err
			}
		}
		// An earlier attempt, maybe by a process that has since died, may
		// have gone as far as the file's record, which is then the truth:
		// it may name a stripped copy, the original being deleted.
		var rec File
		switch err := getJSON(ctx, u.m.store, recordKey(u.fileID), &rec); {
		case err == nil:
			earlier = &rec
			return nil
		case !errors.Is(err, storage.ErrNotFound):
			return err
		}
		// Or it completed the object and lost the answer, perhaps before
		// its final metadata was set. The key holds the file's unique id:
		// an object there of this size is this upload's, unless it names
		// another SHA-256.
		info, err := u.m.store.Stat(ctx, u.key)
		if err != nil {
			return err
		}
		got := info.Meta.User["sha256"]
		if info.Size != u.size || got != "" && got != sum {
			return fmt.Errorf("%s is not this upload's object: %w", u.key, storage.ErrNotFound)
		}
		if got == "" {
			u.log.Warn("stored object lacks its final metadata", "key", u.key)
		}
		return nil
	})
	if err != nil {
		return err
	}

	u.mu.Lock()
	f := File{ID: u.fileID, Room: u.room, Name: u.name, Size: u.size, Type: u.ctype, SHA256: sum,
		User: u.owner.User, UserName: u.owner.Name, Time: u.m.now().UTC().Round(0), Key: u.key}
	mf := u.manifestLocked(u.size, u.hash)
	u.mu.Unlock()
	mf.Status = statusComplete
	if earlier != nil {
		f = *earlier
	} else {
		s, ok, err := u.strip(f.Type)
		if err != nil {
			return err
		}
		if ok {
			f.SentSize, f.SentSHA256 = f.Size, f.SHA256
			f.Key, f.Size, f.SHA256 = s.key, s.size, s.sum
		}
		u.thumbnail(&f)
		err = u.retry("save file record", false, func(ctx context.Context) error {
			return putJSON(ctx, u.m.store, recordKey(f.ID), f)
		})
		if err != nil {
			return err
		}
	}
	if f.Key != u.key {
		// The record names the stripped copy: the original, metadata
		// and all, goes. Before the manifest says complete, so that a
		// crash in between comes back here.
		err = u.retry("delete the original", false, func(ctx context.Context) error {
			return u.m.store.Delete(ctx, u.key)
		})
		if err != nil {
			return err
		}
	}
	if err := u.saveManifest(false, mf); err != nil {
		return err
	}

	u.mu.Lock()
	u.status = statusComplete
	u.file = &f
	sink := u.sink
	u.mu.Unlock()
	u.log.Info("upload complete", "file", f.ID, "size", f.Size, "type", f.Type, "thumbnail", f.ThumbKey != "", "stripped", f.SentSHA256 != "")
	u.m.events.Announce(u.ctx, f)
	if sink != nil {
		sink.Completed(u.id, f)
	}
	return nil
}
