package transfer

import (
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// castagnoli is CRC32C's table: S3 checks each part against its CRC32C.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// chunkCRCs returns the CRC32C of each segment's first lens[i] bytes, the
// first continuing from first (the part being filled). The bytes are hashed
// just after they are read, while they are still in the CPU's cache, which
// spares storing a part a pass over all of it for its checksum.
func chunkCRCs(segs [][]byte, lens []int, first uint32) []uint32 {
	crcs := make([]uint32, len(segs))
	for i, s := range segs {
		crcs[i] = crc32.Update(first, castagnoli, s[:lens[i]])
		first = 0
	}
	return crcs
}

// crc32Combine returns the CRC32C of a‖b from crcA, the CRC32C of a, crcB,
// the one of b, and b's length: how an upload's CRC32C follows from its
// parts', with no pass over their bytes. It is zlib's crc32_combine: the
// CRC of a followed by n zero bits is a linear map of crcA, applied by
// squaring the one-zero-bit operator.
func crc32Combine(crcA, crcB uint32, lenB int64) uint32 {
	if lenB <= 0 {
		return crcA ^ crcB
	}
	var even, odd [32]uint32
	odd[0] = crc32.Castagnoli // the operator for one zero bit
	row := uint32(1)
	for n := 1; n < 32; n++ {
		odd[n] = row
		row <<= 1
	}
	gf2Square(&even, &odd) // two zero bits
	gf2Square(&odd, &even) // four
	for {
		gf2Square(&even, &odd) // one zero byte, then 4, 16…
		if lenB&1 != 0 {
			crcA = gf2Times(&even, crcA)
		}
		if lenB >>= 1; lenB == 0 {
			break
		}
		gf2Square(&odd, &even)
		if lenB&1 != 0 {
			crcA = gf2Times(&odd, crcA)
		}
		if lenB >>= 1; lenB == 0 {
			break
		}
	}
	return crcA ^ crcB
}

func gf2Times(mat *[32]uint32, vec uint32) uint32 {
	var sum uint32
	for i := 0; vec != 0; i, vec = i+1, vec>>1 {
		if vec&1 != 0 {
			sum ^= mat[i]
		}
	}
	return sum
}

func gf2Square(square, mat *[32]uint32) {
	for n := range mat {
		square[n] = gf2Times(mat, mat[n])
	}
}

// checkCRC32C returns s, a CRC32C in 8 hex digits, in lower case ("" for
// none).
func checkCRC32C(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if len(s) != 8 {
		return "", errorf(CodeBadRequest, "crc32c must be 8 hex digits")
	}
	if _, err := strconv.ParseUint(s, 16, 32); err != nil {
		return "", errorf(CodeBadRequest, "crc32c must be 8 hex digits")
	}
	return strings.ToLower(s), nil
}

// crcHex is how a CRC32C is written in the protocol: 8 hex digits,
// big-endian, as S3's checksum reads in hex.
func crcHex(c uint32) string { return fmt.Sprintf("%08x", c) }
