using System.Text.Json;
using LmmR1.Infrastructure;
using LmmR1.Tests.Support;
using LmmR1.Text;

namespace LmmR1.Tests.Text;

public class ChatTemplateTests
{
    public static IEnumerable<object[]> ProcessorCases() =>
        File.ReadLines(TestPaths.Fixture("processor", "cases.jsonl")).Where(l => l.Trim().Length > 0).Select((l, i) => new object[] { i, l });

    [Theory]
    [MemberData(nameof(ProcessorCases))]
    public void RendersFixturePromptsExactly(int index, string line)
    {
        using var doc = JsonDocument.Parse(line);
        var messages = ChatMessages.Parse(doc.RootElement.GetProperty("messages"));
        string expected = doc.RootElement.GetProperty("prompt").GetString()!;
        Assert.True(expected == ChatTemplate.Apply(messages, addGenerationPrompt: true), $"case {index}");
    }

    [Fact]
    public void SpecExampleAndVariants()
    {
        var user = ChatMessage.FromParts("user", ContentPart.FromImage("a.png"), ContentPart.FromText("Describe this image."));
        // QWEN2VL_SPEC §8 example.
        Assert.Equal("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" +
                     "<|vision_start|><|image_pad|><|vision_end|>Describe this image.<|im_end|>\n<|im_start|>assistant\n",
                     ChatTemplate.Apply([user]));
        // No generation prompt; a system message first suppresses the default one.
        Assert.Equal("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n",
                     ChatTemplate.Apply([ChatMessage.FromText("system", "S"), ChatMessage.FromText("user", "hi")], addGenerationPrompt: false));
        // add_vision_id numbers images across messages.
        var two = ChatMessage.FromParts("user", ContentPart.FromImage("a"), ContentPart.FromImage("b"));
        Assert.Equal("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>" +
                     "Picture 2: <|vision_start|><|image_pad|><|vision_end|><|im_end|>\n", ChatTemplate.Apply([two], false, addVisionId: true));
        // Plain string prompt with --apply_chat_template.
        Assert.Equal("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n",
                     ChatTemplate.ApplyToText("1+1?"));
    }

    [Fact]
    public void ImagePartsAreRecognisedLikeTheJinjaTemplate()
    {
        const string json = """
        [{"role":"user","content":[
          {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},
          {"image":"x.png","min_pixels":3136,"max_pixels":100352},
          {"type":"image","image":"file:///abs/y.jpg","resized_height":280,"resized_width":420},
          {"type":"video","video":"v.mp4"},
          {"type":"text","text":"What?"},
          {"type":"unknown"}]},
         {"role":"assistant","content":"ok"}]
        """;
        var m = ChatMessages.Parse(json);
        var parts = m[0].Parts!;
        Assert.Equal([ContentPartKind.Image, ContentPartKind.Image, ContentPartKind.Image, ContentPartKind.Video, ContentPartKind.Text, ContentPartKind.Other],
                     parts.Select(p => p.Kind));
        Assert.Equal("data:image/png;base64,AAAA", parts[0].ImageSource);
        Assert.Equal(new ImagePartOptions(3136, 100352), parts[1].ImageOptions);
        Assert.Null(parts[1].Type);
        Assert.Equal(new ImagePartOptions(ResizedHeight: 280, ResizedWidth: 420), parts[2].ImageOptions);
        Assert.Equal("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" +
                     "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>" +
                     "<|vision_start|><|video_pad|><|vision_end|>What?<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n",
                     ChatTemplate.Apply(m, addGenerationPrompt: false));
    }

    [Theory]
    [InlineData("{\"role\":\"user\"}", "expected a JSON list")]
    [InlineData("[]", "empty")]
    [InlineData("[{\"content\":\"x\"}]", "message[0].role")]
    [InlineData("[{\"role\":\"user\"}]", "message[0].content")]
    [InlineData("[{\"role\":\"user\",\"content\":3}]", "a string or a list")]
    [InlineData("[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"image\":\"a\",\"max_pixels\":-5}]}]", "max_pixels")]
    [InlineData("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]", "text")]
    [InlineData("[{\"role\":\"user\", ", "not valid JSON")]
    public void MalformedMessagesAreInputErrors(string json, string expectedFragment)
    {
        var e = Assert.Throws<InputException>(() => ChatMessages.Parse(json, "data.jsonl", 7, "message"));
        Assert.Contains("data.jsonl:7", e.Message);
        Assert.Contains(expectedFragment, e.Message);
    }
}
