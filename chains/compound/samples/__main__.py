"""Regenerate the bundled sample recording: python -m compound.samples"""
from compound.samples import BOOKING_SENTENCE, BOOKING_WAV, synthesize_wav

if __name__ == "__main__":
    BOOKING_WAV.write_bytes(synthesize_wav(BOOKING_SENTENCE))
    print(f"wrote {BOOKING_WAV} ({BOOKING_WAV.stat().st_size} bytes)")
