package preview

import (
	"image"

	"golang.org/x/image/draw"
)

// shrink returns m scaled to w×h, which is no larger than m.
//
// While m is at least twice the size wanted, it is first halved with
// ApproxBiLinear: at exactly 2:1 that filter averages each 2×2 block, a box
// filter, so halving does not alias, and it is cheap. CatmullRom then does
// the last step, of less than 2:1, where its quality shows. Going straight
// to CatmullRom would cost a float buffer of 32 bytes × w × m's height
// (61 MB for a 12 MP photo) and several times the time.
func shrink(m image.Image, w, h int) *image.RGBA {
	src, sr := m, m.Bounds()
	for sr.Dx() >= 2*w && sr.Dy() >= 2*h {
		// Dropping an odd last row or column keeps the ratio exactly 2:1;
		// the image is at least twice the thumbnail, so it does not show.
		hw, hh := sr.Dx()/2, sr.Dy()/2
		half := image.NewRGBA(image.Rect(0, 0, hw, hh))
		even := image.Rect(sr.Min.X, sr.Min.Y, sr.Min.X+2*hw, sr.Min.Y+2*hh)
		draw.ApproxBiLinear.Scale(half, half.Bounds(), src, even, draw.Src, nil)
		src, sr = half, half.Bounds()
	}
	if sr.Dx() == w && sr.Dy() == h {
		if rgba, ok := src.(*image.RGBA); ok && src != m {
			return rgba
		}
		dst := image.NewRGBA(image.Rect(0, 0, w, h))
		draw.Draw(dst, dst.Bounds(), src, sr.Min, draw.Src)
		return dst
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, sr, draw.Src, nil)
	return dst
}
