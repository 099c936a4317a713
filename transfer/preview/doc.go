// Package preview makes thumbnails of uploaded images and strips the
// metadata of JPEG photos. The upload engine calls it once an upload is
// complete; it knows nothing of storage or of the protocol, and takes the
// stored object as a plain stream.
//
// Make decodes JPEG, PNG, GIF (its first frame) and WebP (lossy, lossless,
// with alpha, but not animated: golang.org/x/image/webp does not read
// animations), turns JPEG photos upright by their EXIF
// orientation, and encodes a thumbnail no larger than Config.MaxSide: JPEG
// for opaque images, PNG for ones with transparency. It reports the
// original's displayed size so that a client can lay out the full image
// before fetching it.
//
// Not supported, on purpose: HEIC/HEIF and AVIF, because there is no
// maintained pure-Go decoder and the project builds without cgo; video,
// for the same reason; TIFF, BMP and camera raw files, which are rare in
// sharing and costly to decode. Their uploads get no thumbnail (Make returns
// ErrUnsupported), and the client shows an icon for the type.
//
// # Memory
//
// Make reads an image's dimensions from its header before decoding it and
// refuses, with ErrTooLarge, more pixels than Config.MaxPixels, so that a
// small file that declares a huge image costs nothing. Beyond that, a call
// holds the decoded image, whose size depends on the format, plus about 1.3
// bytes a pixel and at most 26 MB more while scaling:
//
//	baseline JPEG, 4:2:0 (phones, cameras)   1.5 bytes a pixel
//	baseline JPEG, 4:4:4; grey PNG; GIF      1 to 3 bytes a pixel
//	progressive JPEG                         add 4 bytes a pixel per full-size component
//	8-bit PNG; lossless WebP                 4 bytes a pixel (WebP: up to 8)
//	16-bit PNG                               8 bytes a pixel
//
// A 12 MP phone photo takes about 50 MB and half a second of one core. At
// the 50 MP default the worst cases (16-bit PNG, progressive 4:4:4 JPEG)
// reach 500 to 850 MB. A lossy WebP may also make the decoder allocate up to
// 128 MiB for the compressed frame its header declares before reading it.
// Run few calls at once (a semaphore sized to the memory set aside for
// previews) and lower MaxPixels on small machines.
//
// StripJPEG holds one header segment at a time, about 70 KiB whatever the
// file.
package preview
