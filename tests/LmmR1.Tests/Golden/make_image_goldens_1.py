# Goldens for GoldenTests.cs, part 1: resizes (Pillow BICUBIC and torchvision uint8 antialiased bicubic) of three generated images, and RGBA -> RGB as qwen_vl_utils.to_rgb and transformers' convert_to_rgb do.
# Run on the GPU machine (Pillow 12.3, torch 2.11, torchvision 0.26, transformers 5.17) as: OUT=<dir> python3 make_image_goldens_1.py
# It writes OUT/g/*; data/ holds its output (part 1 writes manifest1.json, part 2 manifest2.json, merged into
# data/manifest.json; the 252x168 noise resizes and a third processor case were left out to keep data/ small).
# Kept compact so it fits the 2,000-character device command line it was sent in.
import numpy as np,os,json,torch,transformers as T
from PIL import Image as I
from torchvision.transforms.v2 import functional as F
from torchvision.transforms import InterpolationMode as M
from safetensors.torch import save_file
o=os.environ['OUT']+'/g';os.makedirs(o);r=np.random.default_rng(7);m={'versions':dict(pillow=I.__version__,torch=torch.__version__,transformers=T.__version__),'resize':[],'decode':[],'to_rgb':[],'processor_pil':[]}
def S(a,n):I.fromarray(np.asarray(a).astype(np.uint8)).save(o+'/'+n)
X={'a.png':r.integers(0,256,(61,97,3)),'b.png':np.clip(np.arange(300)[None,:,None]*.8+np.arange(40)[:,None,None]*5+r.integers(0,40,(40,300,3)),0,255),'c.png':np.where(((np.arange(200)[:,None]//7+np.arange(200)//5)%2)[...,None]==1,[250,10,120],[5,240,30])}
for n,a in X.items():
 S(a,n);im=I.open(o+'/'+n).convert('RGB');t=torch.from_numpy(np.asarray(im).copy()).permute(2,0,1).contiguous()
 for w,h in[(28,28),(56,84),(140,112),(364,56),(252,168),(30,200),(97,61)]:
  p=f'{n[0]}_pil_{w}x{h}.png';im.resize((w,h),I.BICUBIC).save(o+'/'+p);m['resize'].append(dict(input=n,width=w,height=h,kernel='pil',output=p))
  p=f'{n[0]}_tv_{w}x{h}.png';S(F.resize(t,[h,w],interpolation=M.BICUBIC,antialias=True).permute(1,2,0).numpy(),p);m['resize'].append(dict(input=n,width=w,height=h,kernel='torchvision',output=p))
A=np.concatenate([r.integers(0,256,(16,32,3)),np.tile(np.arange(0,256,8)[None,:,None],(16,1,1))],-1);A[0,:,3]=0;I.fromarray(A.astype(np.uint8),'RGBA').save(o+'/rgba.png');q=I.open(o+'/rgba.png')
W=I.new('RGB',q.size,(255,)*3);W.paste(q,mask=q.split()[3]);W.save(o+'/rgba_q.png');I.alpha_composite(I.new('RGBA',q.size,(255,)*4),q.convert('RGBA')).convert('RGB').save(o+'/rgba_t.png');m['to_rgb'].append(dict(input='rgba.png',qwen_vl_utils='rgba_q.png',transformers='rgba_t.png'))
json.dump(m,open(o+'/manifest1.json','w'));print(m['versions'])
