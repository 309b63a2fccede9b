// GPT-2's byte-level alphabet, used by Qwen's tokenizer.json: every byte maps to one printable character
// (printable Latin-1 bytes to themselves, the rest to U+0100 upwards), so BPE tokens are strings over 256 chars.
namespace LmmR1.Text;

public static class ByteLevel
{
    static readonly char[] ByteToChar = BuildByteToChar();
    static readonly Dictionary<char, byte> CharToByte = BuildCharToByte();

    public static char Char(byte b) => ByteToChar[b];

    public static bool TryByte(char c, out byte b) => CharToByte.TryGetValue(c, out b);

    /// <summary>The token string for raw bytes (each byte as its alphabet character).</summary>
    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>
    /// Appends the bytes a token stands for. As in tokenizers' ByteLevel decoder, a token with a character outside
    /// the alphabet (an added token such as "<|im_end|>" is inside it; a non-Latin one may not be) contributes its
    /// UTF-8 text instead.
    /// </summary>
    public static void AppendBytes(string token, List<byte> into)
    {
        int start = into.Count;
        foreach (char c in token)
        {
            if (!CharToByte.TryGetValue(c, out byte b))
            {
                into.RemoveRange(start, into.Count - start);
                into.AddRange(System.Text.Encoding.UTF8.GetBytes(token));
                return;
            }
            into.Add(b);
        }
    }

    static char[] BuildByteToChar()
    {
        var map = new char[256];
        var direct = new bool[256];
        for (int b = '!'; b <= '~'; b++) direct[b] = true;
        for (int b = 0xA1; b <= 0xAC; b++) direct[b] = true;
        for (int b = 0xAE; b <= 0xFF; b++) direct[b] = true;
        int n = 0;
        for (int b = 0; b < 256; b++)
            map[b] = direct[b] ? (char)b : (char)(256 + n++);
        return map;
    }

    static Dictionary<char, byte> BuildCharToByte()
    {
        var d = new Dictionary<char, byte>(256);
        for (int b = 0; b < 256; b++) d[ByteToChar[b]] = (byte)b;
        return d;
    }
}
