// Exact rational number over BigInteger, always reduced with a positive denominator. Every operation that could
// grow without bound (Pow, Parse of huge literals) is size-capped: it returns null instead of allocating
// megabytes, so a hostile `10^{10^{10}}` falls back to floating point instead of hanging.
using System.Globalization;
using System.Numerics;

namespace LmmR1.Rewards.Verification.Symbolic;

internal readonly struct BigRational : IEquatable<BigRational>, IComparable<BigRational>
{
    /// <summary>Largest numerator or denominator we keep exactly (bits). Beyond that callers switch to doubles.</summary>
    public const int MaxBits = 4096;

    public BigInteger Num { get; }
    public BigInteger Den { get; }

    public BigRational(BigInteger num, BigInteger den)
    {
        if (den.IsZero) throw new DivideByZeroException();
        if (den.Sign < 0) { num = -num; den = -den; }
        var g = BigInteger.GreatestCommonDivisor(num, den);
        if (!g.IsOne && !g.IsZero) { num /= g; den /= g; }
        Num = num;
        Den = num.IsZero ? BigInteger.One : den;
    }

    public BigRational(BigInteger integer) { Num = integer; Den = BigInteger.One; }

    public static readonly BigRational Zero = new(BigInteger.Zero);
    public static readonly BigRational One = new(BigInteger.One);
    public static readonly BigRational Hundredth = new(BigInteger.One, new BigInteger(100));

    public bool IsInteger => Den.IsOne;
    public bool IsZero => Num.IsZero;
    public int Sign => Num.Sign;
    public bool IsTooLarge => Num.GetBitLength() > MaxBits || Den.GetBitLength() > MaxBits;

    public static BigRational operator +(BigRational a, BigRational b) => new(a.Num * b.Den + b.Num * a.Den, a.Den * b.Den);
    public static BigRational operator -(BigRational a, BigRational b) => new(a.Num * b.Den - b.Num * a.Den, a.Den * b.Den);
    public static BigRational operator *(BigRational a, BigRational b) => new(a.Num * b.Num, a.Den * b.Den);
    public static BigRational operator /(BigRational a, BigRational b) => new(a.Num * b.Den, a.Den * b.Num);
    public static BigRational operator -(BigRational a) => new(-a.Num, a.Den);
    public static bool operator ==(BigRational a, BigRational b) => a.Equals(b);
    public static bool operator !=(BigRational a, BigRational b) => !a.Equals(b);
    public static bool operator <(BigRational a, BigRational b) => a.CompareTo(b) < 0;
    public static bool operator >(BigRational a, BigRational b) => a.CompareTo(b) > 0;
    public static bool operator <=(BigRational a, BigRational b) => a.CompareTo(b) <= 0;
    public static bool operator >=(BigRational a, BigRational b) => a.CompareTo(b) >= 0;

    public BigRational Abs() => Num.Sign < 0 ? -this : this;

    /// <summary>a^e for an integer exponent, or null when the result would exceed <see cref="MaxBits"/>.</summary>
    public BigRational? Pow(BigInteger e)
    {
        if (e.IsZero) return One;
        if (Num.IsZero) return e.Sign > 0 ? Zero : null;
        if (Num.IsOne && Den.IsOne) return One;
        if (Num == BigInteger.MinusOne && Den.IsOne) return e.IsEven ? One : this;
        var bits = Math.Max(Num.GetBitLength(), Den.GetBitLength());
        var absE = BigInteger.Abs(e);
        if (absE > MaxBits || bits * (long)absE > MaxBits) return null;
        int n = (int)absE;
        var num = BigInteger.Pow(Num, n);
        var den = BigInteger.Pow(Den, n);
        return e.Sign > 0 ? new BigRational(num, den) : new BigRational(den, num);
    }

    /// <summary>Exact integer k-th root when this is a perfect k-th power (both parts), else null.</summary>
    public BigRational? ExactRoot(int k)
    {
        if (k <= 0) return null;
        if (Num.Sign < 0 && k % 2 == 0) return null;
        var n = IntegerRoot(BigInteger.Abs(Num), k);
        var d = IntegerRoot(Den, k);
        if (n is null || d is null) return null;
        return new BigRational(Num.Sign < 0 ? -n.Value : n.Value, d.Value);
    }

    private static BigInteger? IntegerRoot(BigInteger x, int k)
    {
        if (x.IsZero || x.IsOne) return x;
        if (x.GetBitLength() > MaxBits) return null;
        // Newton iteration from a double estimate, then fix up.
        var estimate = Math.Pow(Math.Exp(BigInteger.Log(x)), 1.0 / k);
        BigInteger r = double.IsFinite(estimate) && estimate < 1e300 ? new BigInteger(Math.Round(estimate)) : BigInteger.One << (int)(x.GetBitLength() / k);
        for (int i = 0; i < 200; i++)
        {
            var rk1 = BigInteger.Pow(r, k - 1);
            if (rk1.IsZero) { r = BigInteger.One; continue; }
            var next = ((k - 1) * r + x / rk1) / k;
            if (BigInteger.Abs(next - r) <= BigInteger.One) { r = next; break; }
            r = next;
        }
        for (var c = r - 2; c <= r + 2; c++)
            if (c.Sign >= 0 && BigInteger.Pow(c, k) == x) return c;
        return null;
    }

    public double ToDouble()
    {
        if (Den.IsOne) return (double)Num;
        var nb = Num.GetBitLength();
        var db = Den.GetBitLength();
        if (nb < 1000 && db < 1000) return (double)Num / (double)Den;
        // Scale to keep ~64 significant bits.
        var shift = (int)(nb - db) - 64;
        BigInteger q = shift >= 0 ? Num / (Den << shift) : (Num << -shift) / Den;
        return (double)q * Math.Pow(2, shift);
    }

    /// <summary>Rounds to <paramref name="decimals"/> decimal places, ties to even (as sympy's Expr.round).</summary>
    public BigRational RoundDecimals(int decimals)
    {
        var scale = BigInteger.Pow(10, Math.Max(0, decimals));
        var scaled = this * new BigRational(scale);
        var floor = BigInteger.Divide(scaled.Num - (scaled.Num.Sign < 0 ? scaled.Den - 1 : 0), scaled.Den);
        var frac = scaled - new BigRational(floor);
        var half = new BigRational(1, 2);
        var cmp = frac.CompareTo(half);
        var rounded = cmp > 0 || (cmp == 0 && !floor.IsEven) ? floor + 1 : floor;
        return new BigRational(rounded, scale);
    }

    /// <summary>Parses "123", "-1.25", ".5", "2e-3" exactly; null on anything else or on absurd sizes.</summary>
    public static BigRational? ParseDecimal(ReadOnlySpan<char> s)
    {
        s = s.Trim();
        if (s.IsEmpty || s.Length > 2000) return null;
        bool neg = false;
        if (s[0] == '-' || s[0] == '+') { neg = s[0] == '-'; s = s[1..]; }
        int exp = 0;
        int ePos = s.IndexOfAny('e', 'E');
        if (ePos >= 0)
        {
            if (!int.TryParse(s[(ePos + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out exp)) return null;
            if (Math.Abs(exp) > 1000) return null;
            s = s[..ePos];
        }
        int dot = s.IndexOf('.');
        ReadOnlySpan<char> intPart = dot >= 0 ? s[..dot] : s;
        ReadOnlySpan<char> fracPart = dot >= 0 ? s[(dot + 1)..] : ReadOnlySpan<char>.Empty;
        if (intPart.IsEmpty && fracPart.IsEmpty) return null;
        BigInteger digits = BigInteger.Zero;
        foreach (var c in intPart) { if (c < '0' || c > '9') return null; digits = digits * 10 + (c - '0'); }
        foreach (var c in fracPart) { if (c < '0' || c > '9') return null; digits = digits * 10 + (c - '0'); }
        exp -= fracPart.Length;
        var r = exp >= 0 ? new BigRational(digits * BigInteger.Pow(10, exp)) : new BigRational(digits, BigInteger.Pow(10, -exp));
        return neg ? -r : r;
    }

    public bool Equals(BigRational other) => Num == other.Num && Den == other.Den;
    public override bool Equals(object? obj) => obj is BigRational r && Equals(r);
    public override int GetHashCode() => HashCode.Combine(Num, Den);
    public int CompareTo(BigRational other) => (Num * other.Den).CompareTo(other.Num * Den);

    public override string ToString() => Den.IsOne ? Num.ToString(CultureInfo.InvariantCulture)
        : $"{Num.ToString(CultureInfo.InvariantCulture)}/{Den.ToString(CultureInfo.InvariantCulture)}";
}
