package ingest

import (
	"time"

	"github.com/pion/rtp"
)

// reorderBuffer puts one RTP stream back in sequence order and holds a gap
// open long enough for a NACK retransmission to fill it. It is a time-bound
// buffer, not a packet-count one: a retransmission arrives about one round
// trip plus a NACK interval late whatever the bitrate, so a count-based
// window would be too short for a fast stream and too long for a slow one.
//
// It is not safe for concurrent use; the caller serialises per stream.
type reorderBuffer struct {
	maxWait    time.Duration // how long a hole is held open for a retransmission
	maxPackets int           // bound on memory whatever the clock says

	next    uint16 // the sequence number expected next
	started bool
	slots   map[uint16]heldPacket
	// oldest is when the earliest packet still held arrived: it is what
	// the hole in front of it has been waiting for.
	oldest time.Time
}

type heldPacket struct {
	pkt     *rtp.Packet
	arrived time.Time
}

// reorderResult is what one push releases, in sequence order.
type reorderResult struct {
	packets []*rtp.Packet
	// lost counts sequence numbers given up on: the packets after each
	// hole follow it in packets, and lostBefore[i] is the number lost
	// just before packets[i].
	lost       int
	lostBefore []int
	// late counts duplicates and retransmissions that came after their
	// place had been given up or already filled: dropped.
	late int
}

func newReorderBuffer(maxWait time.Duration, maxPackets int) *reorderBuffer {
	return &reorderBuffer{maxWait: maxWait, maxPackets: maxPackets, slots: map[uint16]heldPacket{}}
}

// push adds a packet (the caller hands over ownership) and returns what
// can be delivered now.
func (b *reorderBuffer) push(pkt *rtp.Packet, now time.Time) reorderResult {
	var res reorderResult
	if !b.started {
		b.started, b.next = true, pkt.SequenceNumber
	}
	// Sequence numbers wrap: compare by signed distance from the head.
	ahead := int16(pkt.SequenceNumber - b.next)
	switch {
	case ahead < 0:
		res.late++
		return res
	case ahead == 0:
		res.add(pkt, 0)
		b.next++
		if b.drainContiguous(&res) {
			b.resetOldest()
		}
	default:
		if _, dup := b.slots[pkt.SequenceNumber]; dup {
			res.late++
			return res
		}
		if len(b.slots) == 0 {
			b.oldest = now
		}
		b.slots[pkt.SequenceNumber] = heldPacket{pkt: pkt, arrived: now}
	}
	b.expire(&res, now)
	return res
}

// expire gives up on the hole at the head when it has waited too long or
// the buffer is full, then releases what follows it.
func (b *reorderBuffer) expire(res *reorderResult, now time.Time) {
	for len(b.slots) > 0 && (now.Sub(b.oldest) >= b.maxWait || len(b.slots) > b.maxPackets) {
		skipped := 0
		for {
			if _, ok := b.slots[b.next]; ok {
				break
			}
			b.next++
			skipped++
		}
		res.lost += skipped
		h := b.slots[b.next]
		delete(b.slots, b.next)
		b.next++
		res.add(h.pkt, skipped)
		b.drainContiguous(res)
		b.resetOldest()
	}
}

// flush releases everything held, giving up on every hole (end of stream).
func (b *reorderBuffer) flush() reorderResult {
	var res reorderResult
	b.expire(&res, b.oldest.Add(b.maxWait))
	return res
}

// drainContiguous releases the packets that follow the head without a
// hole, and reports whether it released any.
func (b *reorderBuffer) drainContiguous(res *reorderResult) bool {
	released := false
	for {
		h, ok := b.slots[b.next]
		if !ok {
			return released
		}
		delete(b.slots, b.next)
		b.next++
		res.add(h.pkt, 0)
		released = true
	}
}

func (b *reorderBuffer) resetOldest() {
	b.oldest = time.Time{}
	for _, h := range b.slots {
		if b.oldest.IsZero() || h.arrived.Before(b.oldest) {
			b.oldest = h.arrived
		}
	}
}

func (r *reorderResult) add(p *rtp.Packet, lostBefore int) {
	r.packets = append(r.packets, p)
	r.lostBefore = append(r.lostBefore, lostBefore)
}
