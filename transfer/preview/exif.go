package preview

import (
	"bytes"
	"encoding/binary"
	"image"
)

// exifHeader starts the payload of an APP1 segment that holds Exif data; the
// TIFF structure follows it.
const exifHeader = "Exif\x00\x00"

// tagOrientation is the TIFF tag of the Exif orientation, in IFD0.
const tagOrientation = 0x0112

// exifOrientation returns the Orientation tag (1 to 8) of IFD0 in tiff, the
// bytes after exifHeader, or 0 when it has none or a value outside 1..8.
// Only IFD0 is read: the orientation lives nowhere else, and a parser that
// reads no further cannot be led into loops or deep offsets by a hostile file.
func exifOrientation(tiff []byte) int {
	if len(tiff) < 8 {
		return 0
	}
	var order binary.ByteOrder
	switch string(tiff[:4]) {
	case "II*\x00":
		order = binary.LittleEndian
	case "MM\x00*":
		order = binary.BigEndian
	default:
		return 0
	}
	off := uint64(order.Uint32(tiff[4:]))
	if off < 8 || off+2 > uint64(len(tiff)) {
		return 0
	}
	n := int(order.Uint16(tiff[off:]))
	entries := tiff[off+2:]
	for i := 0; i < n && 12*i+12 <= len(entries); i++ {
		e := entries[12*i : 12*i+12]
		if order.Uint16(e) != tagOrientation {
			continue
		}
		if order.Uint32(e[4:]) != 1 { // count
			return 0
		}
		var v uint32
		switch order.Uint16(e[2:]) { // type
		case 3: // SHORT, the type the standard names
			v = uint32(order.Uint16(e[8:]))
		case 4: // LONG, written by a few tools and read by browsers all the same
			v = order.Uint32(e[8:])
		default:
			return 0
		}
		if v < 1 || v > 8 {
			return 0
		}
		return int(v)
	}
	return 0
}

// minimalExif returns a whole APP1 segment (marker included) whose Exif data
// is IFD0 with the single Orientation tag o: what StripJPEG keeps of a
// photo's metadata so that viewers still show it upright.
func minimalExif(o int) []byte {
	var b bytes.Buffer
	b.Grow(36)
	be := binary.BigEndian
	b.Write([]byte{0xFF, 0xE1, 0, 0})
	b.WriteString(exifHeader)
	b.WriteString("MM\x00*")
	b.Write(be.AppendUint32(nil, 8))              // IFD0 right after the header
	b.Write(be.AppendUint16(nil, 1))              // one entry
	b.Write(be.AppendUint16(nil, tagOrientation)) // tag
	b.Write(be.AppendUint16(nil, 3))              // SHORT
	b.Write(be.AppendUint32(nil, 1))              // count
	b.Write(be.AppendUint16(nil, uint16(o)))      // value, left-justified
	b.Write([]byte{0, 0})                         // padding of the value field
	b.Write(be.AppendUint32(nil, 0))              // no IFD1
	seg := b.Bytes()
	be.PutUint16(seg[2:], uint16(len(seg)-2))
	return seg
}

// orient returns m turned as EXIF orientation o says the photo is shown:
// 2 to 8 mirror and rotate, anything else leaves m as it is. It runs on the
// thumbnail, after scaling, so that turning costs a few hundred kilobytes and
// not a second copy of the full-size photo.
func orient(m *image.RGBA, o int) *image.RGBA {
	if o < 2 || o > 8 {
		return m
	}
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	dw, dh := w, h
	if o >= 5 {
		dw, dh = h, w
	}
	d := image.NewRGBA(image.Rect(0, 0, dw, dh))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			// Where stored pixel (x, y) is shown; the EXIF standard
			// defines each orientation by where row 0 and column 0 go.
			var dx, dy int
			switch o {
			case 2: // mirrored
				dx, dy = w-1-x, y
			case 3: // turned 180°
				dx, dy = w-1-x, h-1-y
			case 4: // upside down mirror
				dx, dy = x, h-1-y
			case 5: // transposed
				dx, dy = y, x
			case 6: // stored turned 90° counter-clockwise: turn clockwise
				dx, dy = h-1-y, x
			case 7: // transversed
				dx, dy = h-1-y, w-1-x
			case 8: // stored turned 90° clockwise: turn counter-clockwise
				dx, dy = y, w-1-x
			}
			si := m.PixOffset(b.Min.X+x, b.Min.Y+y)
			di := d.PixOffset(dx, dy)
			copy(d.Pix[di:di+4], m.Pix[si:si+4])
		}
	}
	return d
}
