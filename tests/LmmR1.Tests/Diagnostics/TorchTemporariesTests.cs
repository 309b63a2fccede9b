// Static check of the TorchSharp 0.107 finalizer race: reads the IL of our assemblies and lists every call that makes
// a temporary Scalar nothing keeps alive across the native call — a number converted to Scalar (or to Tensor) at the
// call site, Tensor ± number operators, `Tensor + Tensor` / add(…) / addcdiv(…) / arange(stop) overloads that add a
// hidden 1 or 0, the linalg norms' ord, tensor.ToDouble()-style reads. Rooted forms (TorchScalars' helpers and cached
// Scalars) do not match. Covers the folders made race-free so far; a positive control proves the scan sees the patterns.
using System.Reflection;
using System.Reflection.Emit;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;
using TorchSharp;

namespace LmmR1.Tests.Diagnostics;

public class TorchTemporariesTests
{
    /// <summary>Namespaces of LmmR1.Core whose code must not hand TorchSharp a temporary Scalar.</summary>
    static readonly string[] CoreNamespaces = ["LmmR1.Models", "LmmR1.Vision", "LmmR1.Generation", "LmmR1.Text", "LmmR1.Data"];

    [Fact]
    public void ModelsVisionGenerationTextAndDataMakeNoTemporaryScalars()
    {
        var sites = TemporaryScalarScan.Sites(typeof(LmmR1.Models.Qwen.QwenVLModel).Assembly.Location, CoreNamespaces);
        Assert.True(sites.Count == 0, $"{sites.Count} call(s) make a temporary TorchSharp Scalar (use TorchScalars' helpers):\n" + string.Join('\n', sites));
    }

    [Fact]
    public void TheCliMakesNoTemporaryScalars()
    {
        var sites = TemporaryScalarScan.Sites(typeof(LmmR1.Cli.CliApp).Assembly.Location, ["LmmR1.Cli"]);
        Assert.True(sites.Count == 0, $"{sites.Count} call(s) make a temporary TorchSharp Scalar (use TorchScalars' helpers):\n" + string.Join('\n', sites));
    }

    [Fact]
    public void TheScanFindsEachPatternOfTheControlAndNothingInTheRootedForms()
    {
        var sites = TemporaryScalarScan.Sites(typeof(TorchTemporariesTests).Assembly.Location, [typeof(Control).FullName!.Replace('+', '/')]);
        string[] expected =
        [
            "Scalar::op_Implicit", "Tensor::op_Addition", "Tensor::op_Multiply", "Tensor::add(", "torch::arange(", "Tensor::op_Implicit",
            "TensorExtensionMethods::ToDouble", "Tensor::square()", "TorchTemporariesTests::Helper",
        ];
        var bad = sites.Where(s => s.Contains("::Bad", StringComparison.Ordinal)).ToList();
        foreach (var e in expected) Assert.True(bad.Any(s => s.Contains(e, StringComparison.Ordinal)), $"no {e} among:\n" + string.Join('\n', sites));
        Assert.DoesNotContain(sites, s => s.Contains("::Rooted", StringComparison.Ordinal));
    }

    /// <summary>Never run: only its IL is read.</summary>
    static class Control
    {
        public static torch.Tensor BadPlusNumber(torch.Tensor x) => x + 1.5;
        public static torch.Tensor BadPlusTensor(torch.Tensor x, torch.Tensor y) => x + y;
        public static torch.Tensor BadTimes(torch.Tensor x) => x * 2;
        public static torch.Tensor BadFill(torch.Tensor x, torch.Tensor m) => x.masked_fill(m, -1);
        public static torch.Tensor BadAdd(torch.Tensor x, torch.Tensor y) => x.add(y);
        public static torch.Tensor BadArange() => torch.arange(5L, torch.ScalarType.Int64);
        public static torch.Tensor BadShift(torch.Tensor x) => x.bitwise_right_shift(3);
        public static double BadRead(torch.Tensor x) => x.ToDouble();
        public static torch.Tensor BadSquare(torch.Tensor x) => x.square();
        public static torch.Tensor BadViaHelper(torch.Tensor x) => Helper(x);
        public static torch.Tensor RootedPlus(torch.Tensor x, torch.Tensor y) => LmmR1.Infrastructure.TorchScalars.Plus(x, y);
        public static torch.Tensor RootedFill(torch.Tensor x, torch.Tensor m) => x.masked_fill(m, LmmR1.Infrastructure.TorchScalars.MinusOne);
        public static torch.Tensor RootedTimes(torch.Tensor x, torch.Tensor y) => x * y;
    }

    /// <summary>Outside the scanned control class: a helper whose temporary its callers inherit.</summary>
    static torch.Tensor Helper(torch.Tensor x) => x - 1;
}

/// <summary>Finds call sites whose TorchSharp target makes a temporary Scalar (or Tensor from a number): a conversion at
/// the call site itself, or a TorchSharp method that makes one inside, found by reading TorchSharp's own IL (its
/// number conversions and `.ToScalar()` calls, closed over its internal calls: `a + b` → `add(b)` → `add(b, 1)`).</summary>
public static class TemporaryScalarScan
{
    static readonly Dictionary<short, OpCode> OpCodesByValue =
        typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static).Select(f => (OpCode)f.GetValue(null)!).ToDictionary(o => o.Value);

    const string T = "TorchSharp.torch/Tensor";

    /// <summary>A number (or a tensor's value) becoming a Scalar or Tensor that only the callee sees.</summary>
    static bool Converts(string target) =>
        target.StartsWith("TorchSharp.Scalar::op_Implicit", StringComparison.Ordinal) ||
        target.StartsWith(T + "::op_Implicit", StringComparison.Ordinal) ||
        target == $"{T}::ToScalar()";

    /// <summary>TorchSharp methods that make a temporary inside (their own `.ToScalar()` calls count too; the implicit
    /// bool → Tensor of their `if (target is null) return false;` does not).</summary>
    public static IReadOnlySet<string> MakingTemporaries => makingTemporaries.Value;
    static readonly Lazy<HashSet<string>> makingTemporaries = new(() => Closure(Calls(typeof(torch).Assembly.Location, _ => true), t =>
        (Converts(t) && t != $"{T}::op_Implicit(Boolean)") || t.StartsWith("TorchSharp.ScalarExtensionMethods::ToScalar", StringComparison.Ordinal)));

    /// <summary>The methods that call a <paramref name="bad"/> target, directly or through other such methods.</summary>
    static HashSet<string> Closure(Dictionary<string, List<string>> calls, Func<string, bool> bad)
    {
        var found = new HashSet<string>(StringComparer.Ordinal);
        for (bool changed = true; changed;)
        {
            changed = false;
            foreach (var (method, targets) in calls)
                if (!found.Contains(method) && targets.Any(t => bad(t) || found.Contains(t))) changed = found.Add(method) | changed;
        }
        return found;
    }

    /// <summary>Whether a call to <paramref name="target"/> ("Type::name(param types)") makes a temporary.</summary>
    public static bool MakesTemporary(string target) => Converts(target) || MakingTemporaries.Contains(target);

    /// <summary>"Type::Method: target" for every call in the types whose full name starts with one of
    /// <paramref name="prefixes"/> that makes a temporary: at the call site, inside TorchSharp, or inside one of this
    /// assembly's methods outside those types (a helper that does it for them).</summary>
    public static List<string> Sites(string assemblyPath, IReadOnlyList<string> prefixes)
    {
        bool Selected(string method) => prefixes.Any(p => method.StartsWith(p, StringComparison.Ordinal));
        var all = Calls(assemblyPath, _ => true);
        var helpers = Closure(all, MakesTemporary);
        return all.Where(kv => Selected(kv.Key))
            .SelectMany(kv => kv.Value.Where(t => MakesTemporary(t) || (helpers.Contains(t) && !Selected(t))).Select(t => $"{kv.Key}: {t}"))
            .ToList();
    }

    /// <summary>Every method with a body in the selected types → the methods it calls (call, callvirt, newobj, ldftn).</summary>
    static Dictionary<string, List<string>> Calls(string assemblyPath, Func<string, bool> selectType)
    {
        using var fs = File.OpenRead(assemblyPath);
        using var pe = new PEReader(fs);
        var md = pe.GetMetadataReader();
        var names = new Names(md);
        var calls = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var th in md.TypeDefinitions)
        {
            string type = names.Type(th);
            if (!selectType(type)) continue;
            foreach (var mh in md.GetTypeDefinition(th).GetMethods())
            {
                var def = md.GetMethodDefinition(mh);
                if (def.RelativeVirtualAddress == 0) continue;
                var il = pe.GetMethodBody(def.RelativeVirtualAddress).GetILBytes()!;
                string self = names.Method(mh);
                if (!calls.TryGetValue(self, out var targets)) calls[self] = targets = [];
                for (int i = 0; i < il.Length;)
                {
                    short value = il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i];
                    i += il[i] == 0xFE ? 2 : 1;
                    var op = OpCodesByValue[value];
                    if (op.OperandType == OperandType.InlineMethod)
                        targets.Add(names.Method(MetadataTokens.EntityHandle(BitConverter.ToInt32(il.AsSpan(i, 4)))));
                    i += op.OperandType switch
                    {
                        OperandType.InlineNone => 0,
                        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                        OperandType.InlineVar => 2,
                        OperandType.InlineI8 or OperandType.InlineR => 8,
                        OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il.AsSpan(i, 4)),
                        _ => 4,
                    };
                }
            }
        }
        return calls;
    }

    /// <summary>Type and method names as "Namespace.Outer/Inner" and "Type::name(param types)".</summary>
    sealed class Names(MetadataReader md) : ISignatureTypeProvider<string, object?>
    {
        public string Type(TypeDefinitionHandle h)
        {
            var d = md.GetTypeDefinition(h);
            var outer = d.GetDeclaringType();
            return outer.IsNil ? Join(md.GetString(d.Namespace), md.GetString(d.Name)) : Type(outer) + "/" + md.GetString(d.Name);
        }

        string Ref(TypeReferenceHandle h)
        {
            var r = md.GetTypeReference(h);
            return r.ResolutionScope.Kind == HandleKind.TypeReference
                ? Ref((TypeReferenceHandle)r.ResolutionScope) + "/" + md.GetString(r.Name)
                : Join(md.GetString(r.Namespace), md.GetString(r.Name));
        }

        static string Join(string ns, string name) => ns.Length == 0 ? name : ns + "." + name;

        string Parent(EntityHandle h) => h.Kind switch
        {
            HandleKind.TypeReference => Ref((TypeReferenceHandle)h),
            HandleKind.TypeDefinition => Type((TypeDefinitionHandle)h),
            HandleKind.TypeSpecification => md.GetTypeSpecification((TypeSpecificationHandle)h).DecodeSignature(this, null),
            _ => "?",
        };

        public string Method(EntityHandle h)
        {
            switch (h.Kind)
            {
                case HandleKind.MemberReference:
                    var m = md.GetMemberReference((MemberReferenceHandle)h);
                    if (m.GetKind() != MemberReferenceKind.Method) return Parent(m.Parent) + "::" + md.GetString(m.Name);
                    return $"{Parent(m.Parent)}::{md.GetString(m.Name)}({string.Join(",", m.DecodeMethodSignature(this, null).ParameterTypes)})";
                case HandleKind.MethodDefinition:
                    var d = md.GetMethodDefinition((MethodDefinitionHandle)h);
                    return $"{Type(d.GetDeclaringType())}::{md.GetString(d.Name)}({string.Join(",", d.DecodeSignature(this, null).ParameterTypes)})";
                case HandleKind.MethodSpecification:
                    return Method(md.GetMethodSpecification((MethodSpecificationHandle)h).Method);
                default:
                    return "?";
            }
        }

        public string GetArrayType(string e, ArrayShape s) => e + "[,]";
        public string GetByReferenceType(string e) => e + "&";
        public string GetFunctionPointerType(MethodSignature<string> s) => "fnptr";
        public string GetGenericInstantiation(string g, System.Collections.Immutable.ImmutableArray<string> a) => g + "<" + string.Join(",", a) + ">";
        public string GetGenericMethodParameter(object? c, int i) => "!!" + i;
        public string GetGenericTypeParameter(object? c, int i) => "!" + i;
        public string GetModifiedType(string m, string u, bool r) => u;
        public string GetPinnedType(string e) => e;
        public string GetPointerType(string e) => e + "*";
        public string GetPrimitiveType(PrimitiveTypeCode t) => t.ToString();
        public string GetSZArrayType(string e) => e + "[]";
        public string GetTypeFromDefinition(MetadataReader r, TypeDefinitionHandle h, byte k) => Type(h);
        public string GetTypeFromReference(MetadataReader r, TypeReferenceHandle h, byte k) => Ref(h);
        public string GetTypeFromSpecification(MetadataReader r, object? c, TypeSpecificationHandle h, byte k) =>
            r.GetTypeSpecification(h).DecodeSignature(this, c);
    }
}
