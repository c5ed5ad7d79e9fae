/**
 * The read-only status page served at `/` on the API listener: plain HTML and JavaScript, no build
 * step. It reads /api/status and /api/bans (with the bearer token typed into the page, kept in
 * sessionStorage, when the API requires one) and offers an unban button when a token is given.
 */
export const STATUS_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>zimbra-gatekeeper status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2430}
header{background:#1d2430;color:#fff;padding:12px 20px;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
header h1{font-size:18px;margin:0;flex:1}
main{padding:16px 20px;display:grid;gap:16px;grid-template-columns:repeat(auto-fit,minmax(360px,1fr))}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 16px}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #eef0f3;font-size:13px}
.ok{color:#1a7f37}.bad{color:#cf222e}.wide{grid-column:1/-1}
button{font:inherit;padding:2px 8px;cursor:pointer}
#chart svg{width:100%;height:180px}
.legend span{display:inline-block;margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
#error{color:#cf222e}
</style></head>
<body>
<header><h1>zimbra-gatekeeper</h1><span id="health">…</span>
<label>API token <input id="token" type="password" size="24" autocomplete="off"></label><button id="save">Use token</button></header>
<main>
<p id="error" class="wide"></p>
<section class="wide"><h2>Failed logins per service, last 24 hours</h2><div id="chart"></div><div class="legend" id="legend"></div></section>
<section class="wide"><h2>Active bans (<span id="bancount">0</span>)</h2><table><thead><tr><th>address</th><th>rule</th><th>tier</th><th>#</th><th>until</th><th></th></tr></thead><tbody id="bans"></tbody></table></section>
<section><h2>Top offending addresses</h2><table><tbody id="topips"></tbody></table></section>
<section><h2>Most targeted accounts</h2><table><tbody id="topaccounts"></tbody></table></section>
<section><h2>Health</h2><table><tbody id="healthtable"></tbody></table></section>
</main>
<script>
const COLORS=['#0969da','#cf222e','#1a7f37','#bf8700','#8250df','#57606a','#e16f24','#0a3069'];
const $=(id)=>document.getElementById(id);
const esc=(s)=>String(s).replace(/[&<>"']/g,(c)=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'})[c]);
const token=()=>sessionStorage.getItem('gkToken')||'';
async function api(path,opts={}){const h=token()?{authorization:'Bearer '+token()}:{};const r=await fetch(path,{...opts,headers:{...h,...(opts.headers||{})}});if(!r.ok)throw new Error(path+': HTTP '+r.status+(r.status===401?' (enter the API token)':''));return r.json();}
function chart(hours){const services=[...new Set(hours.flatMap((h)=>Object.keys(h.failures)))].sort();
const max=Math.max(1,...hours.map((h)=>Object.values(h.failures).reduce((a,b)=>a+b,0)));const W=960,H=170,bw=W/hours.length;let out='';
hours.forEach((h,i)=>{let y=H;services.forEach((s,k)=>{const v=h.failures[s]||0;if(!v)return;const hgt=(v/max)*(H-20);y-=hgt;out+='<rect class="bar" x="'+(i*bw+2)+'" y="'+y+'" width="'+(bw-4)+'" height="'+hgt+'" fill="'+COLORS[k%COLORS.length]+'"><title>'+esc(s)+': '+v+'</title></rect>';});
if(i%3===0)out+='<text x="'+(i*bw+2)+'" y="'+(H+9)+'" font-size="9">'+new Date(h.start).getHours()+':00</text>';});
$('chart').innerHTML='<svg viewBox="0 0 '+W+' '+(H+10)+'" preserveAspectRatio="none">'+out+'</svg>';
$('legend').innerHTML=services.map((s,k)=>'<span><i style="background:'+COLORS[k%COLORS.length]+'"></i>'+esc(s)+'</span>').join('')||'<span>no failed logins</span>';}
async function refresh(){try{$('error').textContent='';const [st,b]=await Promise.all([api('/api/status'),api('/api/bans')]);
const h=st.health;$('health').innerHTML='<span class="'+(h.status==='ok'?'ok':'bad')+'">'+esc(h.status)+'</span> · mode '+esc(h.mode);
$('healthtable').innerHTML='<tr><td>store</td><td class="'+(h.store.ok?'ok':'bad')+'">'+esc(h.store.backend+': '+h.store.detail)+'</td></tr>'+Object.entries(h.upstreams||{}).map(([k,v])=>'<tr><td>upstream '+esc(k)+'</td><td class="'+(v.ok?'ok':'bad')+'">'+esc(v.detail)+'</td></tr>').join('')+'<tr><td>firewall</td><td>'+esc(h.firewall.backend)+(h.firewall.ok===false?' <span class="bad">'+esc(h.firewall.lastError||'error')+'</span>':'')+'</td></tr>';
chart(st.activity.hours);$('bancount').textContent=b.bans.length;
$('bans').innerHTML=b.bans.map((x)=>'<tr><td>'+esc(x.ip)+'</td><td>'+esc(x.reason)+'</td><td>'+esc(x.tier)+(x.shadow?' (shadow)':'')+'</td><td>'+x.count+'</td><td>'+esc(x.until)+'</td><td>'+(token()?'<button data-ip="'+esc(x.ip)+'">unban</button>':'')+'</td></tr>').join('')||'<tr><td colspan="6">no active bans</td></tr>';
$('topips').innerHTML=st.activity.topAddresses.map((x)=>'<tr><td>'+esc(x.ip)+'</td><td>'+x.failures+'</td></tr>').join('')||'<tr><td>none</td></tr>';
$('topaccounts').innerHTML=st.activity.topAccounts.map((x)=>'<tr><td>'+esc(x.account)+'</td><td>'+x.failures+'</td></tr>').join('')||'<tr><td>none</td></tr>';
document.body.dataset.loaded='1';}catch(e){$('error').textContent=e.message;document.body.dataset.loaded='error';}}
$('bans').addEventListener('click',async(e)=>{const ip=e.target.dataset&&e.target.dataset.ip;if(!ip)return;try{await api('/api/bans/'+encodeURIComponent(ip),{method:'DELETE'});}catch(err){$('error').textContent=err.message;}refresh();});
$('save').addEventListener('click',()=>{sessionStorage.setItem('gkToken',$('token').value);refresh();});
refresh();setInterval(refresh,10000);
</script></body></html>
`;
