package client

import (
	"bytes"
	"image"
	"image/jpeg"
	"testing"
)

// A server that strips a photo's metadata stores other bytes than it was
// sent: the upload still verifies, against what the server received, and
// the download against what it stored.
func TestUploadStrippedPhoto(t *testing.T) {
	ctx := testContext(t)
	fs := startFileServer(t)
	up := dial(t, fs.URL, "up")
	if _, err := up.Join(ctx, "photos"); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewGray(image.Rect(0, 0, 64, 48)), nil); err != nil {
		t.Fatal(err)
	}
	const comment = "taken at 48.8582N 2.2945E"
	com := append([]byte{0xFF, 0xFE, 0, byte(len(comment) + 2)}, comment...)
	photo := append(append(append([]byte{}, b.Bytes()[:2]...), com...), b.Bytes()[2:]...)

	for name, opts := range map[string]UploadOptions{
		"hashed while sent": {Name: "a.jpg"},
		"digest declared":   {Name: "b.jpg", SHA256: hexSHA(photo)},
	} {
		t.Run(name, func(t *testing.T) {
			f, err := up.Upload(ctx, "photos", bytes.NewReader(photo), int64(len(photo)), opts)
			if err != nil {
				t.Fatal(err)
			}
			if f.SentSHA256 != hexSHA(photo) || f.SentSize != int64(len(photo)) || f.SHA256 == hexSHA(photo) {
				t.Errorf("file %+v: want the sent digest apart from the stored one", f)
			}
			if f.Thumb == "" || f.Width != 64 || f.Height != 48 {
				t.Errorf("thumb %q, %d×%d", f.Thumb, f.Width, f.Height)
			}
			var got bytes.Buffer
			if _, err := up.Download(ctx, f, &got); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(got.Bytes(), []byte(comment)) || int64(got.Len()) != f.Size {
				t.Errorf("downloaded %d bytes (file says %d), comment kept: %v", got.Len(), f.Size, bytes.Contains(got.Bytes(), []byte(comment)))
			}
		})
	}
}
