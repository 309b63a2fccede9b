// The Qwen2-VL / Qwen2.5-VL chat template (QWEN_TEMPLATE in make_fixtures.py, the checkpoints' chat_template.json),
// written as code rather than run through a Jinja engine: default system prompt, <|im_start|>role\n … <|im_end|>\n,
// image parts as <|vision_start|><|image_pad|><|vision_end|>, video parts with <|video_pad|>, optional
// "Picture N: " prefixes (add_vision_id) and the generation prompt.
using System.Text;

namespace LmmR1.Text;

public static class ChatTemplate
{
    public const string DefaultSystemPrompt = "You are a helpful assistant.";
    public const string ImagePlaceholder = "<|vision_start|><|image_pad|><|vision_end|>";
    public const string VideoPlaceholder = "<|vision_start|><|video_pad|><|vision_end|>";
    public const string GenerationPrompt = "<|im_start|>assistant\n";

    /// <summary>The same template as Jinja, exactly as Qwen2-VL / Qwen2.5-VL checkpoints ship it in chat_template.json
    /// (QWEN_TEMPLATE in make_fixtures.py); written into exported model folders.</summary>
    public const string Jinja =
        "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
        + "You are a helpful assistant.<|im_end|>\n"
        + "{% endif %}<|im_start|>{{ message['role'] }}\n"
        + "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
        + "{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
        + "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
        + "{% endif %}";

    public static string Apply(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true, bool addVisionId = false)
    {
        var sb = new StringBuilder();
        int images = 0, videos = 0;
        for (int i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            if (i == 0 && m.Role != "system")
                sb.Append("<|im_start|>system\n").Append(DefaultSystemPrompt).Append("<|im_end|>\n");
            sb.Append("<|im_start|>").Append(m.Role).Append('\n');
            if (m.Parts == null)
            {
                sb.Append(m.Text).Append("<|im_end|>\n");
                continue;
            }
            foreach (var p in m.Parts)
                switch (p.Kind)
                {
                    case ContentPartKind.Image:
                        images++;
                        if (addVisionId) sb.Append("Picture ").Append(images).Append(": ");
                        sb.Append(ImagePlaceholder);
                        break;
                    case ContentPartKind.Video:
                        videos++;
                        if (addVisionId) sb.Append("Video ").Append(videos).Append(": ");
                        sb.Append(VideoPlaceholder);
                        break;
                    case ContentPartKind.Text:
                        sb.Append(p.Text);
                        break;
                }
            sb.Append("<|im_end|>\n");
        }
        if (addGenerationPrompt) sb.Append(GenerationPrompt);
        return sb.ToString();
    }

    /// <summary>A text prompt as OpenRLHF's --apply_chat_template renders a plain string: one user message.</summary>
    public static string ApplyToText(string userText, bool addGenerationPrompt = true) =>
        Apply([ChatMessage.FromText("user", userText)], addGenerationPrompt);
}
