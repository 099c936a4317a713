package preview

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"
)

var (
	red  = color.RGBA{220, 20, 20, 255}
	grey = color.RGBA{128, 128, 128, 255}
)

// cornerImage is a grey w×h image with a red block over the top-left
// quarter of each side, to find after turning.
func cornerImage(w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := grey
			if x < w/4 && y < h/4 {
				c = red
			}
			m.SetRGBA(x, y, c)
		}
	}
	return m
}

func encodeJPEG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodePNG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// withSegments inserts whole segments right after a JPEG's SOI marker, where
// cameras put theirs.
func withSegments(jpg []byte, segs ...[]byte) []byte {
	out := append([]byte{}, jpg[:2]...)
	for _, s := range segs {
		out = append(out, s...)
	}
	return append(out, jpg[2:]...)
}

// seg builds a segment with a length from its marker and payload.
func seg(marker byte, payload ...[]byte) []byte {
	p := bytes.Join(payload, nil)
	n := len(p) + 2
	return append([]byte{0xFF, marker, byte(n >> 8), byte(n)}, p...)
}

// byteOrder is what binary.LittleEndian and binary.BigEndian both are.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// tiffEntry is one IFD entry: value holds count items of typ, written in
// the TIFF's byte order by the caller; over 4 bytes it goes out of line.
type tiffEntry struct {
	tag, typ uint16
	count    uint32
	value    []byte
}

// buildTIFF lays out a TIFF structure by hand, as cameras write it: IFD0,
// then the GPS IFD when gps is not empty (IFD0 then gets a GPSInfo pointer),
// then out-of-line values.
func buildTIFF(order byteOrder, ifd0, gps []tiffEntry) []byte {
	if len(gps) > 0 {
		ifd0 = append(ifd0, tiffEntry{tag: 0x8825, typ: 4, count: 1}) // value set below
	}
	ifdSize := func(n int) int { return 2 + 12*n + 4 }
	gpsOff := 8 + ifdSize(len(ifd0))
	dataOff := gpsOff
	if len(gps) > 0 {
		dataOff += ifdSize(len(gps))
	}
	var data []byte
	writeIFD := func(entries []tiffEntry, next uint32) []byte {
		b := order.AppendUint16(nil, uint16(len(entries)))
		for _, e := range entries {
			b = order.AppendUint16(b, e.tag)
			b = order.AppendUint16(b, e.typ)
			b = order.AppendUint32(b, e.count)
			switch {
			case e.tag == 0x8825:
				b = order.AppendUint32(b, uint32(gpsOff))
			case len(e.value) <= 4:
				b = append(b, e.value...)
				b = append(b, make([]byte, 4-len(e.value))...)
			default:
				b = order.AppendUint32(b, uint32(dataOff+len(data)))
				data = append(data, e.value...)
			}
		}
		return order.AppendUint32(b, next)
	}
	var out []byte
	if order.String() == binary.LittleEndian.String() {
		out = []byte("II*\x00")
	} else {
		out = []byte("MM\x00*")
	}
	out = order.AppendUint32(out, 8)
	out = append(out, writeIFD(ifd0, 0)...)
	if len(gps) > 0 {
		out = append(out, writeIFD(gps, 0)...)
	}
	return append(out, data...)
}

// Distinctive metadata a phone writes, to look for in StripJPEG's output.
const (
	cameraMake = "FerryCam Model X\x00"
	gpsMethod  = "ASCII\x00\x00\x00GPS"
)

// gpsLatitude is 48°51'29.6" as three RATIONALs, a pattern no encoder writes.
var gpsLatitude = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(
	binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(
		binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil,
			48), 1), 51), 1), 296), 10)

// cameraExif returns an APP1 Exif segment as a phone writes one: camera make,
// orientation o (none when 0), and a GPS IFD.
func cameraExif(order byteOrder, o int) []byte {
	ifd0 := []tiffEntry{{tag: 0x010F, typ: 2, count: uint32(len(cameraMake)), value: []byte(cameraMake)}}
	if o != 0 {
		ifd0 = append(ifd0, tiffEntry{tag: tagOrientation, typ: 3, count: 1, value: order.AppendUint16(nil, uint16(o))})
	}
	gps := []tiffEntry{
		{tag: 0x0001, typ: 2, count: 2, value: []byte("N\x00")},
		{tag: 0x0002, typ: 5, count: 3, value: gpsLatitude}, // big-endian bytes whatever the order: only looked for
		{tag: 0x001B, typ: 7, count: uint32(len(gpsMethod)), value: []byte(gpsMethod)},
	}
	return seg(markerAPP1, []byte(exifHeader), buildTIFF(order, ifd0, gps))
}

// orientationExif returns an APP1 Exif segment holding only orientation o,
// written with the given byte order and TIFF type (3 SHORT, 4 LONG).
func orientationExif(order byteOrder, o int, typ uint16) []byte {
	v := order.AppendUint16(nil, uint16(o))
	if typ == 4 {
		v = order.AppendUint32(nil, uint32(o))
	}
	return seg(markerAPP1, []byte(exifHeader),
		buildTIFF(order, []tiffEntry{{tag: tagOrientation, typ: typ, count: 1, value: v}}, nil))
}

// Segments that StripJPEG must drop or keep.
var (
	xmpSegment       = seg(markerAPP1, []byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><exif:GPSLatitude>48,51.49N</exif:GPSLatitude></x:xmpmeta>"))
	photoshopSegment = seg(markerAPP13, []byte("Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0b\x1c\x02\x50\x00\x06Author"))
	commentSegment   = seg(markerCOM, []byte("secret comment"))
	jfifSegment      = seg(0xE0, []byte("JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"))
	iccSegment       = seg(0xE2, []byte("ICC_PROFILE\x00\x01\x01"), bytes.Repeat([]byte{0x42}, 200))
)
