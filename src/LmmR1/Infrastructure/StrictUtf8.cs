// Strict UTF-8: input text with bytes that are not UTF-8 is reported (file, line, byte offset) instead of being
// silently replaced by U+FFFD as .NET's default decoders do (a label `5\xff6` must not train as `5�6`).
using System.Buffers;
using System.Text;

namespace LmmR1.Infrastructure;

public static class StrictUtf8
{
    /// <summary>Index of the first byte that does not start a valid UTF-8 sequence, or -1 when all are valid.</summary>
    public static int FirstInvalidByte(ReadOnlySpan<byte> bytes)
    {
        if (System.Text.Unicode.Utf8.IsValid(bytes)) return -1;
        int i = 0;
        while (i < bytes.Length)
        {
            if (Rune.DecodeFromUtf8(bytes[i..], out _, out int consumed) != OperationStatus.Done) return i;
            i += consumed;
        }
        return -1;
    }

    /// <summary>"byte 0xFF at byte offset N".</summary>
    public static string DescribeInvalid(ReadOnlySpan<byte> bytes, int index, long baseOffset = 0) =>
        $"not valid UTF-8: byte 0x{bytes[index]:X2} at byte offset {baseOffset + index}";
}
