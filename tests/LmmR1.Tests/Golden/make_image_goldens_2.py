# Goldens for GoldenTests.cs, part 2: PIL-encoded JPEG/WebP/GIF/BMP/grey/palette/LA files with what qwen_vl_utils.to_rgb makes of them, and transformers' PIL image processor (Qwen2VLImageProcessorPil) on two generated images.
# Run on the GPU machine (Pillow 12.3, torch 2.11, torchvision 0.26, transformers 5.17) as: OUT=<dir> python3 make_image_goldens_2.py
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
for n,a in X.items():S(a,n)
B=I.fromarray(np.clip(np.arange(48)[None,:,None]*2+np.arange(40)[:,None,None]*3+r.integers(0,60,(40,48,3)),0,255).astype(np.uint8));L=B.convert('L');R,G,_=B.split()
V={'q90.jpg':lambda p:B.save(p,quality=90),'s444.jpg':lambda p:B.save(p,quality=75,subsampling=0),'prog.jpg':lambda p:B.save(p,quality=85,progressive=True),'grey.jpg':lambda p:L.save(p),'ll.webp':lambda p:B.save(p,lossless=True),'lossy.webp':lambda p:B.save(p,quality=80),'rgba.webp':lambda p:I.merge('RGBA',[*B.split(),G]).save(p,lossless=True),'pal.gif':lambda p:B.convert('P',palette=I.ADAPTIVE,colors=64).save(p),'x.bmp':lambda p:B.save(p),'grey.png':lambda p:L.save(p),'pal.png':lambda p:B.convert('P',palette=I.ADAPTIVE,colors=32).save(p),'la.png':lambda p:I.merge('LA',[L,R]).save(p)}
for n,f in V.items():
 f(o+'/'+n);im=I.open(o+'/'+n);md=im.mode
 if md=='RGBA':w=I.new('RGB',im.size,(255,)*3);w.paste(im,mask=im.split()[3]);im=w
 im.convert('RGB').save(o+f'/{n}_rgb.png');m['decode'].append(dict(input=n,pil_mode=md,rgb=f'{n}_rgb.png'))
P=getattr(T,'Qwen2VLImageProcessorPil',None) or T.Qwen2VLImageProcessor;m['versions']['pil_processor']=P.__name__
for n,mn,mx in[('a.png',3136,12544),('b.png',3136,125440),('c.png',3136,12845056)]:
 x=P(min_pixels=mn,max_pixels=mx)(images=[I.open(o+'/'+n).convert('RGB')],return_tensors='pt');save_file({'pixel_values':x['pixel_values'].float().contiguous(),'image_grid_thw':x['image_grid_thw'].long()},o+f'/pp_{n[0]}.safetensors');m['processor_pil'].append(dict(image=n,min_pixels=mn,max_pixels=mx,tensors=f'pp_{n[0]}.safetensors'))
json.dump(m,open(o+'/manifest2.json','w'),indent=0);print(m['versions'])

