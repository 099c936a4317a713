package transfer

import "hash/crc32"

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
