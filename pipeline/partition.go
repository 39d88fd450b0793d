package pipeline

// PartitionFor returns the partition of key among n partitions. It is
// Kafka's default partitioner for keyed records (murmur2 of the key bytes,
// sign bit cleared, modulo the partition count), so Java, librdkafka (with
// partitioner=murmur2_random) and franz-go producers agree with Causeway.
//
// A group's partition depends only on its ID and the partition count: it
// never changes while the count is fixed, which is why the count is fixed
// per deployment (see `causeway topics check`).
func PartitionFor(key string, n int32) int32 {
	if n <= 0 {
		return 0
	}
	return int32(murmur2(key)&0x7fffffff) % n
}

// murmur2 is Kafka's murmur2 (seed 0x9747b28c), as in
// org.apache.kafka.common.utils.Utils.murmur2.
func murmur2(key string) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(key)
	h := seed ^ uint32(n)
	i := 0
	for ; n-i >= 4; i += 4 {
		k := uint32(key[i]) | uint32(key[i+1])<<8 | uint32(key[i+2])<<16 | uint32(key[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch n - i {
	case 3:
		h ^= uint32(key[i+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(key[i+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(key[i])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
